# Sprint 42 status -> a Confluence page: counts by status and the unfinished issues.
import json
from collections import Counter

reply = await atlassian.jira_get_sprint_issues(sprint_id="3391", limit=50)
sprint = json.loads(reply["result"])  # mcp-atlassian returns its JSON as a string in `result`
issues = sprint["issues"]
counts = Counter(i["status"]["name"] for i in issues)
content = "## Sprint 42 report\n\n" + "\n".join(f"- {k}: {v}" for k, v in counts.items()) + "\n\n### Not done\n\n"
content += "\n".join(
    f"- {i['key']} {i['summary']} ({i['status']['name']}, {i['assignee']['display_name']})"
    for i in issues
    if i["status"]["name"] != "Done"
)
page = json.loads(
    (await atlassian.confluence_create_page(space_key="ENG", title="Sprint 42 report", content=content))["result"]
)
print(page["page"]["url"])
print(dict(counts))
