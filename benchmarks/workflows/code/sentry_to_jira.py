# The 3 unresolved Sentry issues with the most events -> one Jira bug each.
import asyncio
import json
import re

text = await sentry.search_issues(
    organizationSlug="acme", projectSlugOrId="web", query="is:unresolved", sort="freq", limit=10
)
issues = []
for block in text.split("\n## ")[1:]:
    short = re.search(r"\[([A-Z]+-\w+)\]", block).group(1)
    title = re.search(r"\*\*(.+?)\*\*", block).group(1)
    events = int(re.search(r"\*\*Events\*\*: (\d+)", block).group(1))
    users = int(re.search(r"\*\*Users\*\*: (\d+)", block).group(1))
    issues.append({"short": short, "title": title, "events": events, "users": users})
top = sorted(issues, key=lambda i: -i["events"])[:3]
created = await asyncio.gather(
    *[
        atlassian.jira_create_issue(
            project_key="WEB",
            summary=f"[Sentry {i['short']}] {i['title']}",
            issue_type="Bug",
            description=f"Sentry issue https://acme.sentry.io/issues/{i['short']}: {i['events']} events, "
            f"{i['users']} users affected.",
        )
        for i in top
    ]
)
for issue, reply in zip(top, created):
    jira = json.loads(reply["result"])  # mcp-atlassian returns its JSON as a string in `result`
    print(jira["issue"]["key"], "<-", issue["short"], issue["events"], "events:", issue["title"])
