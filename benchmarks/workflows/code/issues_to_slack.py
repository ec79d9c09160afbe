# Open issues assigned to me in acme/webapp -> a summary in #eng-standup.
issues = await github.list_issues(owner="acme", repo="webapp", state="open", per_page=50)
mine = [i for i in issues if i["assignee"] and i["assignee"]["login"] == "ada-lovelace"]
channels = await slack.slack_list_channels(limit=100)
channel = next(c["id"] for c in channels["channels"] if c["name"] == "eng-standup")
lines = [f"• #{i['number']} {i['title']} [{', '.join(label['name'] for label in i['labels'])}]" for i in mine]
text = f"Open issues assigned to @ada-lovelace in acme/webapp ({len(mine)}):\n" + "\n".join(lines)
posted = await slack.slack_post_message(channel_id=channel, text=text)
print(f"posted to #eng-standup (ok={posted['ok']}, ts={posted['ts']}):")
print(text)
