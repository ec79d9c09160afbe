# Which jobs fail most in this week's failed pipelines on acme/platform -> an issue listing them.
import asyncio
from collections import Counter

pipelines = await gitlab.list_pipelines(
    project_id="acme/platform", status="failed", updated_after="2026-11-20T09:30:00Z", per_page=40
)
jobs = await asyncio.gather(
    *[
        gitlab.list_pipeline_jobs(project_id="acme/platform", pipeline_id=str(p["id"]), scope="failed")
        for p in pipelines[:15]
    ]
)
tally = Counter(name for pipeline_jobs in jobs for name in {job["name"] for job in pipeline_jobs})
description = "Failed jobs across the last 15 failed pipelines on acme/platform (7 days):\n\n" + "\n".join(
    f"- `{name}`: failed in {count} pipelines" for name, count in tally.most_common()
)
issue = await gitlab.create_issue(
    project_id="acme/platform", title="Flaky CI jobs this week", description=description, labels=["ci", "flaky"]
)
print(issue["web_url"])
print(description)
