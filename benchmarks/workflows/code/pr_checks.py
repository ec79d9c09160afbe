# Open PRs whose CI checks fail -> a list in #eng. One status call per PR, all at once.
import asyncio

pulls = await github.list_pull_requests(owner="acme", repo="webapp", state="open", per_page=20)
statuses = await asyncio.gather(
    *[github.get_pull_request_status(owner="acme", repo="webapp", pull_number=p["number"]) for p in pulls]
)
failing = []
for pull, status in zip(pulls, statuses):
    if status["state"] == "failure":
        checks = [s["context"] for s in status["statuses"] if s["state"] == "failure"]
        failing.append((pull, checks))
text = f"{len(failing)} open PRs in acme/webapp have failing checks:\n" + "\n".join(
    f"• #{p['number']} {p['title']} (@{p['user']['login']}): {', '.join(checks)}" for p, checks in failing
)
channels = await slack.slack_list_channels(limit=100)
eng = next(c["id"] for c in channels["channels"] if c["name"] == "eng")
await slack.slack_post_message(channel_id=eng, text=text)
print(text)
