"""Write the workflow fixtures: `python benchmarks/workflows/make_fixtures.py` (seeded, so reruns are identical).

Each fixture is one workflow: the user's task, the calls a direct-tool-calling agent makes with the result each
downstream tool returns, and the portal's plan (search_api queries, then the agent code in `code/<name>*.py`).
The data is synthetic (there are no real accounts behind the snapshots) but every record has the fields and
nesting of the provider's API object (GitHub REST, Slack Web API, Stripe, HubSpot CRM v3, Kubernetes, GitLab, Jira via
mcp-atlassian, Brave, Postgres rows), so result sizes are those a real call returns. `format` says how the server
serialises it: `json2` (indented JSON, as most Node servers do), `json` (compact) or `text`.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
ME = "ada-lovelace"
PEOPLE = [
    ME,
    "grace-hopper",
    "linus-t",
    "margaret-h",
    "ken-thompson",
    "barbara-liskov",
    "dennis-r",
    "frances-allen",
    "john-mccarthy",
    "radia-p",
    "guido-vr",
    "anders-h",
]
WORDS = [
    "login",
    "checkout",
    "cache",
    "webhook",
    "retry",
    "timeout",
    "migration",
    "payment",
    "invoice",
    "search",
    "index",
    "upload",
    "avatar",
    "session",
    "token",
    "export",
    "report",
    "dashboard",
    "notification",
    "queue",
    "worker",
    "scheduler",
    "billing",
    "sync",
    "mobile",
    "api",
    "gateway",
]
VERBS = ["fails", "is slow", "crashes", "returns 500", "times out", "leaks memory", "double-counts", "hangs"]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(rng: random.Random, days: float) -> datetime:
    return NOW - timedelta(seconds=rng.uniform(0, days * 86400))


def sentence(rng: random.Random, n: int) -> str:
    parts = []
    for _ in range(n):
        a, b = rng.sample(WORDS, 2)
        parts.append(
            rng.choice(
                [
                    f"When the {a} {b} step runs under load it {rng.choice(VERBS)}.",
                    f"Users report that {a} {rng.choice(VERBS)} after the {b} change.",
                    f"Steps to reproduce: open the {a} page, trigger {b}, wait 30 seconds.",
                    f"Expected the {a} to finish; instead the {b} {rng.choice(VERBS)}.",
                    f"Logs show `{a}_{b}_error` with code {rng.randint(400, 599)}.",
                ]
            )
        )
    return " ".join(parts)


# --- GitHub REST shapes ------------------------------------------------------------------------------------------


def gh_user(login: str) -> dict[str, Any]:
    uid = 1000 + PEOPLE.index(login) if login in PEOPLE else 99
    base = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"MDQ6VXNlcj{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": base,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": "User",
        "user_view_type": "public",
        "site_admin": False,
    }


LABELS = [("bug", "d73a4a"), ("enhancement", "a2eeef"), ("p1", "b60205"), ("backend", "0e8a16"), ("frontend", "fbca04")]


def gh_label(repo_api: str, name: str, color: str) -> dict[str, Any]:
    return {
        "id": 5000 + LABELS.index((name, color)),
        "node_id": f"LA_kwDO{name}",
        "url": f"{repo_api}/labels/{name}",
        "name": name,
        "color": color,
        "default": name in ("bug", "enhancement"),
        "description": f"{name.capitalize()} work",
    }


def gh_issue(rng: random.Random, repo: str, number: int, assignee: str | None) -> dict[str, Any]:
    api = f"https://api.github.com/repos/{repo}"
    created = ago(rng, 90)
    labels = [gh_label(api, *label) for label in rng.sample(LABELS, rng.randint(1, 3))]
    a, b = rng.sample(WORDS, 2)
    return {
        "url": f"{api}/issues/{number}",
        "repository_url": api,
        "labels_url": f"{api}/issues/{number}/labels{{/name}}",
        "comments_url": f"{api}/issues/{number}/comments",
        "events_url": f"{api}/issues/{number}/events",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "id": 2_400_000_000 + number,
        "node_id": f"I_kwDOLm{number:06d}",
        "number": number,
        "title": f"{a.capitalize()} {b} {rng.choice(VERBS)}",
        "user": gh_user(rng.choice(PEOPLE)),
        "labels": labels,
        "state": "open",
        "locked": False,
        "assignee": gh_user(assignee) if assignee else None,
        "assignees": [gh_user(assignee)] if assignee else [],
        "milestone": None,
        "comments": rng.randint(0, 14),
        "created_at": iso(created),
        "updated_at": iso(created + (NOW - created) * rng.random()),
        "closed_at": None,
        "author_association": "MEMBER",
        "type": None,
        "active_lock_reason": None,
        "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
        "body": sentence(rng, rng.randint(2, 6)),
        "closed_by": None,
        "reactions": {
            "url": f"{api}/issues/{number}/reactions",
            "total_count": 0,
            "+1": 0,
            "-1": 0,
            "laugh": 0,
            "hooray": 0,
            "confused": 0,
            "heart": 0,
            "rocket": 0,
            "eyes": 0,
        },
        "timeline_url": f"{api}/issues/{number}/timeline",
        "performed_via_github_app": None,
        "state_reason": None,
    }


def gh_repo(full: str) -> dict[str, Any]:
    owner, name = full.split("/")
    api = f"https://api.github.com/repos/{full}"
    urls = {
        f"{key}_url": f"{api}/{path}"
        for key, path in [
            ("forks", "forks"),
            ("keys", "keys{/key_id}"),
            ("collaborators", "collaborators{/collaborator}"),
            ("teams", "teams"),
            ("hooks", "hooks"),
            ("issue_events", "issues/events{/number}"),
            ("events", "events"),
            ("assignees", "assignees{/user}"),
            ("branches", "branches{/branch}"),
            ("tags", "tags"),
            ("blobs", "git/blobs{/sha}"),
            ("git_tags", "git/tags{/sha}"),
            ("git_refs", "git/refs{/sha}"),
            ("trees", "git/trees{/sha}"),
            ("statuses", "statuses/{sha}"),
            ("languages", "languages"),
            ("stargazers", "stargazers"),
            ("contributors", "contributors"),
            ("subscribers", "subscribers"),
            ("subscription", "subscription"),
            ("commits", "commits{/sha}"),
            ("git_commits", "git/commits{/sha}"),
            ("comments", "comments{/number}"),
            ("issue_comment", "issues/comments{/number}"),
            ("contents", "contents/{+path}"),
            ("compare", "compare/{base}...{head}"),
            ("merges", "merges"),
            ("archive", "{archive_format}{/ref}"),
            ("downloads", "downloads"),
            ("issues", "issues{/number}"),
            ("pulls", "pulls{/number}"),
            ("milestones", "milestones{/number}"),
            ("notifications", "notifications{?since,all,participating}"),
            ("labels", "labels{/name}"),
            ("releases", "releases{/id}"),
            ("deployments", "deployments"),
        ]
    }
    return {
        "id": 712_345_678,
        "node_id": "R_kgDOKnXyZg",
        "name": name,
        "full_name": full,
        "private": True,
        "owner": gh_user(owner) | {"type": "Organization"},
        "html_url": f"https://github.com/{full}",
        "description": "The Acme web application",
        "fork": False,
        "url": api,
        **urls,
        "created_at": "2023-02-11T10:12:44Z",
        "updated_at": iso(NOW),
        "pushed_at": iso(NOW),
        "git_url": f"git://github.com/{full}.git",
        "ssh_url": f"git@github.com:{full}.git",
        "clone_url": f"https://github.com/{full}.git",
        "svn_url": f"https://github.com/{full}",
        "homepage": None,
        "size": 48211,
        "stargazers_count": 31,
        "watchers_count": 31,
        "language": "TypeScript",
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": False,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 2,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 148,
        "license": None,
        "allow_forking": False,
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": [],
        "visibility": "private",
        "forks": 2,
        "open_issues": 148,
        "watchers": 31,
        "default_branch": "main",
    }


def gh_pull(rng: random.Random, repo: str, number: int) -> dict[str, Any]:
    api = f"https://api.github.com/repos/{repo}"
    author = rng.choice(PEOPLE)
    branch = f"{author.split('-')[0]}/{rng.choice(WORDS)}-{rng.choice(WORDS)}"
    created = ago(rng, 20)
    sha = f"{rng.getrandbits(160):040x}"
    repo_obj = gh_repo(repo)
    return {
        "url": f"{api}/pulls/{number}",
        "id": 1_900_000_000 + number,
        "node_id": f"PR_kwDOKn{number:06d}",
        "html_url": f"https://github.com/{repo}/pull/{number}",
        "diff_url": f"https://github.com/{repo}/pull/{number}.diff",
        "patch_url": f"https://github.com/{repo}/pull/{number}.patch",
        "issue_url": f"{api}/issues/{number}",
        "number": number,
        "state": "open",
        "locked": False,
        "title": f"{rng.choice(['Fix', 'Add', 'Refactor', 'Speed up'])} {rng.choice(WORDS)} {rng.choice(WORDS)}",
        "user": gh_user(author),
        "body": sentence(rng, rng.randint(1, 4)),
        "created_at": iso(created),
        "updated_at": iso(created + (NOW - created) * rng.random()),
        "closed_at": None,
        "merged_at": None,
        "merge_commit_sha": f"{rng.getrandbits(160):040x}",
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [gh_user(rng.choice(PEOPLE))],
        "requested_teams": [],
        "labels": [],
        "milestone": None,
        "draft": rng.random() < 0.15,
        "commits_url": f"{api}/pulls/{number}/commits",
        "review_comments_url": f"{api}/pulls/{number}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{number}/comments",
        "statuses_url": f"{api}/statuses/{sha}",
        "head": {"label": f"acme:{branch}", "ref": branch, "sha": sha, "user": gh_user(author), "repo": repo_obj},
        "base": {
            "label": "acme:main",
            "ref": "main",
            "sha": f"{rng.getrandbits(160):040x}",
            "user": gh_user(author),
            "repo": repo_obj,
        },
        "_links": {
            key: {"href": href}
            for key, href in [
                ("self", f"{api}/pulls/{number}"),
                ("html", f"https://github.com/{repo}/pull/{number}"),
                ("issue", f"{api}/issues/{number}"),
                ("comments", f"{api}/issues/{number}/comments"),
                ("review_comments", f"{api}/pulls/{number}/comments"),
                ("review_comment", f"{api}/pulls/comments{{/number}}"),
                ("commits", f"{api}/pulls/{number}/commits"),
                ("statuses", f"{api}/statuses/{sha}"),
            ]
        },
        "author_association": "MEMBER",
        "auto_merge": None,
        "active_lock_reason": None,
    }


def gh_status(rng: random.Random, repo: str, pull: dict[str, Any], failing: bool) -> dict[str, Any]:
    sha = pull["head"]["sha"]
    contexts = ["ci/build", "ci/unit-tests", "ci/e2e", "lint", "security/snyk"]
    statuses = []
    broken = rng.choice([1, 2])  # unit tests or e2e
    for index, context in enumerate(contexts):
        state = "failure" if failing and index == broken else "success"
        statuses.append(
            {
                "url": f"https://api.github.com/repos/{repo}/statuses/{sha}",
                "avatar_url": "https://avatars.githubusercontent.com/u/9919?v=4",
                "id": rng.randint(10**10, 10**11),
                "node_id": f"SC_kwDOKn{rng.getrandbits(40):x}",
                "state": state,
                "description": "Tests failed" if state == "failure" else "All checks passed",
                "target_url": f"https://ci.acme.dev/builds/{rng.randint(10000, 99999)}",
                "context": context,
                "created_at": pull["updated_at"],
                "updated_at": pull["updated_at"],
            }
        )
    return {
        "state": "failure" if failing else "success",
        "statuses": statuses,
        "sha": sha,
        "total_count": len(statuses),
        "repository": {k: v for k, v in gh_repo(repo).items() if not k.endswith("_at") and k != "owner"},
        "commit_url": f"https://api.github.com/repos/{repo}/commits/{sha}",
        "url": f"https://api.github.com/repos/{repo}/commits/{sha}/status",
    }


# --- Slack Web API -----------------------------------------------------------------------------------------------


def slack_channels(rng: random.Random, names: list[str]) -> dict[str, Any]:
    channels = []
    for index, name in enumerate(names):
        created = int(ago(rng, 900).timestamp())
        channels.append(
            {
                "id": f"C0{index:02d}{rng.getrandbits(28):07X}",
                "name": name,
                "is_channel": True,
                "is_group": False,
                "is_im": False,
                "is_mpim": False,
                "is_private": False,
                "created": created,
                "is_archived": False,
                "is_general": name == "general",
                "unlinked": 0,
                "name_normalized": name,
                "is_shared": False,
                "is_org_shared": False,
                "is_pending_ext_shared": False,
                "pending_shared": [],
                "context_team_id": "T000",
                "updated": created * 1000,
                "parent_conversation": None,
                "creator": f"U0{rng.getrandbits(32):08X}",
                "is_ext_shared": False,
                "shared_team_ids": ["T000"],
                "pending_connected_team_ids": [],
                "is_member": True,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {
                    "value": f"Discussion about {name.replace('-', ' ')}",
                    "creator": "U0ADMIN",
                    "last_set": created,
                },
                "properties": {"tabs": [{"type": "files", "label": "", "id": "files"}]},
                "previous_names": [],
                "num_members": rng.randint(3, 240),
            }
        )
    return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}


CHANNELS = [
    "general",
    "random",
    "eng",
    "eng-standup",
    "eng-alerts",
    "deploys",
    "incidents",
    "frontend",
    "backend",
    "mobile",
    "design",
    "product",
    "sales",
    "support",
    "billing",
    "security",
    "data",
    "ml",
    "infra",
    "oncall",
    "hiring",
    "announcements",
    "ops",
    "qa",
    "docs",
    "growth",
    "marketing",
    "finance",
    "legal",
    "help-it",
    "kudos",
    "watercooler",
    "releases",
    "platform",
    "api",
    "search",
    "payments",
    "customers",
    "partners",
    "research",
]


def slack_posted(channel: str, text: str, rng: random.Random) -> dict[str, Any]:
    ts = f"{int(NOW.timestamp())}.{rng.randint(100000, 999999)}"
    return {
        "ok": True,
        "channel": channel,
        "ts": ts,
        "message": {
            "user": "U0BOT0001",
            "type": "message",
            "ts": ts,
            "bot_id": "B0BOT0001",
            "app_id": "A0APP0001",
            "text": text,
            "team": "T000",
            "bot_profile": {
                "id": "B0BOT0001",
                "app_id": "A0APP0001",
                "name": "acme-agent",
                "deleted": False,
                "updated": 1700000000,
                "team_id": "T000",
            },
            "blocks": [
                {
                    "type": "rich_text",
                    "block_id": "x1",
                    "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text[:80]}]}],
                }
            ],
        },
    }


def call(tool: str, arguments: dict[str, Any], result: Any, fmt: str = "json2", **extra: Any) -> dict[str, Any]:
    return {"tool": tool, "arguments": arguments, "result": result, "format": fmt, **extra}


# --- the workflows -----------------------------------------------------------------------------------------------


def issues_to_slack(rng: random.Random) -> dict[str, Any]:
    repo = "acme/webapp"
    issues = [gh_issue(rng, repo, 1400 - i, rng.choice([ME, ME, None, *PEOPLE[1:6]])) for i in range(50)]
    mine = [i for i in issues if i["assignee"] and i["assignee"]["login"] == ME]
    channels = slack_channels(rng, CHANNELS)
    channel = next(c["id"] for c in channels["channels"] if c["name"] == "eng-standup")
    text = f"Open issues assigned to @{ME} in {repo} ({len(mine)}):\n" + "\n".join(
        f"• #{i['number']} {i['title']} [{', '.join(label['name'] for label in i['labels'])}]" for i in mine
    )
    return {
        "title": "Open issues assigned to me -> Slack summary",
        "task": f"Find the open issues assigned to me ({ME}) in {repo} and post a short summary to #eng-standup.",
        "calls": [
            call("github.list_issues", {"owner": "acme", "repo": "webapp", "state": "open", "per_page": 50}, issues),
            call("slack.slack_list_channels", {"limit": 100}, channels, "json"),
            call(
                "slack.slack_post_message",
                {"channel_id": channel, "text": text},
                slack_posted(channel, text, rng),
                "json",
                free=["text"],
            ),
        ],
        "portal": [
            {"search_api": {"query": "list open issues in a github repository"}},
            {"search_api": {"query": "post a message to a slack channel"}},
            {"execute_code": "issues_to_slack.py"},
        ],
    }


def pr_checks(rng: random.Random) -> dict[str, Any]:
    repo = "acme/webapp"
    pulls = [gh_pull(rng, repo, 2210 - i) for i in range(20)]
    failing = set(rng.sample(range(20), 5))
    statuses = [gh_status(rng, repo, p, i in failing) for i, p in enumerate(pulls)]
    channels = slack_channels(rng, CHANNELS)
    channel = next(c["id"] for c in channels["channels"] if c["name"] == "eng")
    bad = [p for i, p in enumerate(pulls) if i in failing]
    text = f"{len(bad)} open PRs in {repo} have failing checks:\n" + "\n".join(
        f"• #{p['number']} {p['title']} (@{p['user']['login']})" for p in bad
    )
    calls = [
        call("github.list_pull_requests", {"owner": "acme", "repo": "webapp", "state": "open", "per_page": 20}, pulls)
    ]
    calls += [
        call(
            "github.get_pull_request_status", {"owner": "acme", "repo": "webapp", "pull_number": p["number"]}, s, turn=1
        )
        for p, s in zip(pulls, statuses, strict=True)
    ]
    calls += [
        call("slack.slack_list_channels", {"limit": 100}, channels, "json"),
        call(
            "slack.slack_post_message",
            {"channel_id": channel, "text": text},
            slack_posted(channel, text, rng),
            "json",
            free=["text"],
        ),
    ]
    return {
        "title": "Open PRs with failing checks -> Slack (N+1 calls)",
        "task": f"Which open pull requests in {repo} have failing CI checks? Post the list to #eng.",
        "calls": calls,
        "portal": [
            {"search_api": {"query": "list open pull requests and their check status"}},
            {"search_api": {"query": "post a message to a slack channel", "detail": "signature"}},
            {"execute_code": "pr_checks.py"},
        ],
    }


def sentry_markdown(rng: random.Random, n: int) -> tuple[str, list[dict[str, Any]]]:
    issues = []
    lines = ["# Issues in **acme**", "", "Query: `is:unresolved` sorted by `freq`, project `web`", ""]
    for index in range(n):
        short = f"WEB-{rng.randint(1000, 9999):X}"
        a, b = rng.sample(WORDS, 2)
        title = f"{rng.choice(['TypeError', 'DatabaseError', 'TimeoutError', 'KeyError'])}: {a} {b} {rng.choice(VERBS)}"
        events = rng.randint(40, 9000)
        issue = {"short": short, "title": title, "events": events, "users": rng.randint(1, 800)}
        issues.append(issue)
        lines += [
            f"## {index + 1}. [{short}](https://acme.sentry.io/issues/{short})",
            "",
            f"**{title}**",
            "",
            "- **Status**: unresolved",
            f"- **Level**: {rng.choice(['error', 'fatal'])}",
            f"- **Culprit**: `app/{a}/{b}.py in handle_{a}`",
            f"- **First seen**: {iso(ago(rng, 30))}",
            f"- **Last seen**: {iso(ago(rng, 1))}",
            f"- **Events**: {events}",
            f"- **Users**: {issue['users']}",
            f"- **Assignee**: {'unassigned' if rng.random() < 0.6 else rng.choice(PEOPLE)}",
            f"- **URL**: https://acme.sentry.io/issues/{short}",
            "",
        ]
    lines += ["# Using this information", "", "- Use `get_issue_details` with an issue ID for the stack trace.", ""]
    return "\n".join(lines), issues


def jira_issue(rng: random.Random, key: str, summary: str, description: str, status: str = "To Do") -> dict[str, Any]:
    person = rng.choice(PEOPLE)
    return {
        "id": str(rng.randint(10000, 99999)),
        "key": key,
        "summary": summary,
        "url": f"https://example.atlassian.net/rest/api/2/issue/{key}",
        "description": description,
        "created": iso(ago(rng, 20)).replace("Z", ".000+0000"),
        "updated": iso(ago(rng, 2)).replace("Z", ".000+0000"),
        "status": {
            "name": status,
            "category": {"To Do": "To Do", "Done": "Done"}.get(status, "In Progress"),
            "color": {"To Do": "blue-gray", "Done": "green"}.get(status, "yellow"),
        },
        "issue_type": {"name": rng.choice(["Bug", "Story", "Task"])},
        "priority": {"name": rng.choice(["High", "Medium", "Low"])},
        "assignee": {
            "display_name": person.replace("-", " ").title(),
            "name": person,
            "email": f"{person}@acme.dev",
            "avatar_url": f"https://avatar.atlassian.net/{person}.png",
        },
        "reporter": {
            "display_name": "Ada Lovelace",
            "name": ME,
            "email": f"{ME}@acme.dev",
            "avatar_url": f"https://avatar.atlassian.net/{ME}.png",
        },
        "labels": rng.sample(WORDS, 2),
        "components": [],
        "timetracking": {},
        "customfield_10016": rng.choice([1, 2, 3, 5, 8]),
    }


def sentry_to_jira(rng: random.Random) -> dict[str, Any]:
    text, issues = sentry_markdown(rng, 10)
    top = sorted(issues, key=lambda i: -i["events"])[:3]
    calls = [
        call(
            "sentry.search_issues",
            {
                "organizationSlug": "acme",
                "projectSlugOrId": "web",
                "query": "is:unresolved",
                "sort": "freq",
                "limit": 10,
            },
            text,
            "text",
        ),
    ]
    for index, issue in enumerate(top):
        summary = f"[Sentry {issue['short']}] {issue['title']}"
        description = (
            f"Sentry issue https://acme.sentry.io/issues/{issue['short']}: {issue['events']} events, "
            f"{issue['users']} users affected."
        )
        created = {
            "message": "Issue created successfully",
            "issue": jira_issue(rng, f"WEB-{812 + index}", summary, description),
        }
        calls.append(
            call(
                "atlassian.jira_create_issue",
                {"project_key": "WEB", "summary": summary, "issue_type": "Bug", "description": description},
                created,
                turn=1,
                free=["description"],
            )
        )
    return {
        "title": "Top Sentry errors -> Jira bugs",
        "task": "File a Jira bug in project WEB for each of the 3 unresolved Sentry issues in project web with the most events.",
        "calls": calls,
        "portal": [
            {"search_api": {"query": "search unresolved sentry issues"}},
            {"search_api": {"query": "create a jira issue", "limit": 3}},
            {"execute_code": "sentry_to_jira.py"},
        ],
    }


def stripe_customer(rng: random.Random, index: int) -> dict[str, Any]:
    first, last = (
        rng.choice(["Mia", "Noah", "Ava", "Liam", "Zoe", "Omar", "Ines", "Kai", "Lena", "Ravi"]),
        rng.choice(["Garcia", "Chen", "Okafor", "Novak", "Silva", "Tanaka", "Muller", "Haddad", "Kowalski", "Iyer"]),
    )
    created = int(ago(rng, 30).timestamp())
    return {
        "id": f"cus_{rng.getrandbits(56):014X}",
        "object": "customer",
        "address": {
            "city": rng.choice(["Berlin", "Austin", "Lagos", "Osaka", "Lyon"]),
            "country": rng.choice(["DE", "US", "NG", "JP", "FR"]),
            "line1": f"{rng.randint(1, 200)} Market St",
            "line2": None,
            "postal_code": f"{rng.randint(10000, 99999)}",
            "state": None,
        },
        "balance": 0,
        "created": created,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": f"{first.lower()}.{last.lower()}{index}@example.com",
        "invoice_prefix": f"{rng.getrandbits(32):08X}",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": f"pm_{rng.getrandbits(56):014X}",
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {"plan": rng.choice(["starter", "team", "business"])},
        "name": f"{first} {last}",
        "next_invoice_sequence": rng.randint(1, 12),
        "phone": None,
        "preferred_locales": ["en"],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def stripe_to_hubspot(rng: random.Random) -> dict[str, Any]:
    customers = [stripe_customer(rng, i) for i in range(100)]
    known = rng.sample(customers, 62)
    hub = {
        "total": len(known),
        "results": [
            {
                "id": str(rng.randint(10**10, 10**11)),
                "properties": {
                    "createdate": iso(ago(rng, 30)),
                    "email": c["email"],
                    "firstname": c["name"].split()[0],
                    "hs_object_id": str(rng.randint(10**10, 10**11)),
                    "lastmodifieddate": iso(ago(rng, 5)),
                    "lastname": c["name"].split()[1],
                },
                "createdAt": iso(ago(rng, 30)),
                "updatedAt": iso(ago(rng, 5)),
                "archived": False,
            }
            for c in known
        ],
    }
    known_emails = {c["email"] for c in known}
    missing = [c for c in customers if c["email"] not in known_emails]
    inputs = [
        {
            "properties": {
                "email": c["email"],
                "firstname": c["name"].split()[0],
                "lastname": c["name"].split()[1],
                "city": c["address"]["city"],
                "country": c["address"]["country"],
                "stripe_customer_id": c["id"],
            }
        }
        for c in missing
    ]
    created = {
        "status": "COMPLETE",
        "results": [
            {
                "id": str(rng.randint(10**10, 10**11)),
                "properties": {**i["properties"], "createdate": iso(NOW)},
                "createdAt": iso(NOW),
                "updatedAt": iso(NOW),
                "archived": False,
            }
            for i in inputs
        ],
        "startedAt": iso(NOW),
        "completedAt": iso(NOW),
    }
    return {
        "title": "Copy rows: new Stripe customers -> HubSpot contacts",
        "task": "Copy the 100 most recent Stripe customers into HubSpot as contacts, skipping emails HubSpot already has.",
        "calls": [
            call("stripe.list_customers", {"limit": 100}, customers, "json"),
            call(
                "hubspot.hubspot-search-objects",
                {
                    "objectType": "contacts",
                    "limit": 100,
                    "properties": ["email", "firstname", "lastname"],
                    "filterGroups": [
                        {
                            "filters": [
                                {
                                    "propertyName": "createdate",
                                    "operator": "GTE",
                                    "value": iso(NOW - timedelta(days=31)),
                                }
                            ]
                        }
                    ],
                },
                hub,
            ),
            call("hubspot.hubspot-batch-create-objects", {"objectType": "contacts", "inputs": inputs}, created),
        ],
        "portal": [
            {"search_api": {"query": "list stripe customers"}},
            {"search_api": {"query": "search and batch create hubspot contacts"}},
            {"execute_code": "stripe_to_hubspot.py"},
        ],
    }


def k8s_pod(rng: random.Random, namespace: str, app: str, crash: bool) -> dict[str, Any]:
    suffix = f"{rng.getrandbits(40):010x}"[:10]
    name = f"{app}-{suffix[:5]}-{suffix[5:]}"
    started = ago(rng, 12)
    image = f"registry.acme.dev/{app}:{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
    state = (
        {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off 5m0s restarting failed container={app}"}}
        if crash
        else {"running": {"startedAt": iso(started)}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": f"{app}-{suffix[:5]}-",
            "namespace": namespace,
            "uid": "-".join(f"{rng.getrandbits(b):0{b // 4}x}" for b in (32, 16, 16, 16, 48)),
            "resourceVersion": str(rng.randint(10**6, 10**8)),
            "creationTimestamp": iso(started),
            "labels": {"app": app, "pod-template-hash": suffix[:5], "team": rng.choice(["core", "growth", "payments"])},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{suffix[:5]}",
                    "uid": f"{rng.getrandbits(128):032x}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": app,
                    "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "512Mi"},
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                    },
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "nodeName": f"ip-10-0-{rng.randint(0, 255)}-{rng.randint(0, 255)}.ec2.internal",
            "serviceAccountName": "default",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": t,
                    "status": "False" if crash and t in ("Ready", "ContainersReady") else "True",
                    "lastTransitionTime": iso(started),
                }
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "hostIP": f"10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
            "podIP": f"10.1.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
            "startTime": iso(started),
            "containerStatuses": [
                {
                    "name": app,
                    "state": state,
                    "ready": not crash,
                    "restartCount": rng.randint(20, 90) if crash else rng.randint(0, 2),
                    "image": image,
                    "imageID": f"{image}@sha256:{rng.getrandbits(256):064x}",
                    "containerID": f"containerd://{rng.getrandbits(256):064x}",
                    "started": not crash,
                }
            ],
            "qosClass": "Burstable",
        },
    }


def crashloop_pods(rng: random.Random) -> dict[str, Any]:
    apps = {
        "payments": ["ledger", "checkout-api", "refunds-worker", "fx-rates"],
        "web": ["frontend", "bff", "image-resizer", "sessions"],
        "data": ["etl-runner", "kafka-connect", "metrics-exporter"],
        "platform": ["ingress-nginx", "cert-manager", "external-dns", "coredns"],
    }
    pods = []
    crashing = {("payments", "refunds-worker"), ("web", "image-resizer"), ("data", "etl-runner")}
    for namespace, names in apps.items():
        for app in names:
            for _ in range(rng.randint(8, 12)):
                pods.append(k8s_pod(rng, namespace, app, (namespace, app) in crashing and rng.random() < 0.5))
    bad = [p for p in pods if not p["status"]["containerStatuses"][0]["ready"]]
    listing = {"apiVersion": "v1", "kind": "List", "items": pods, "metadata": {"resourceVersion": ""}}
    calls = [call("kubernetes.kubectl_get", {"resourceType": "pods", "allNamespaces": True, "output": "json"}, listing)]
    for pod in bad[:3]:
        app = pod["metadata"]["labels"]["app"]
        lines = []
        for i in range(40):
            moment = iso(NOW - timedelta(seconds=40 - i))
            lines.append(
                f"{moment} INFO {app} starting worker pid={rng.randint(1, 999)} config=/etc/{app}/config.yaml"
                if i < 36
                else f"{moment} ERROR {app} fatal: connection to postgres://{app}-db:5432 refused (attempt {i - 35}/3)"
            )
        calls.append(
            call(
                "kubernetes.kubectl_logs",
                {
                    "resourceType": "pod",
                    "name": pod["metadata"]["name"],
                    "namespace": pod["metadata"]["namespace"],
                    "tail": 40,
                    "previous": True,
                },
                "\n".join(lines),
                "text",
                turn=1,
            )
        )
    return {
        "title": "Filter a large listing: crash-looping pods and their last errors",
        "task": "Which pods in the cluster are crash-looping? Show me the last error line of three of them.",
        "calls": calls,
        "portal": [
            {"search_api": {"query": "list kubernetes pods in all namespaces and get pod logs"}},
            {"execute_code": "crashloop_pods.py"},
        ],
    }


def gitlab_pipelines(rng: random.Random) -> dict[str, Any]:
    project = "acme/platform"
    pipelines = []
    for i in range(40):
        pid = 88000 - i * 7
        created = ago(rng, 7)
        pipelines.append(
            {
                "id": pid,
                "iid": 4100 - i,
                "project_id": 311,
                "sha": f"{rng.getrandbits(160):040x}",
                "ref": rng.choice(["main", "main", "release/2.14", f"feature/{rng.choice(WORDS)}"]),
                "status": "failed",
                "source": rng.choice(["push", "merge_request_event", "schedule"]),
                "created_at": iso(created),
                "updated_at": iso(created + timedelta(minutes=rng.randint(5, 50))),
                "web_url": f"https://gitlab.com/{project}/-/pipelines/{pid}",
                "name": None,
            }
        )
    flaky = ["e2e:checkout", "test:integration", "e2e:search", "lint:types", "test:unit", "build:docker"]
    weights = [30, 18, 12, 4, 3, 2]
    calls = [
        call(
            "gitlab.list_pipelines",
            {"project_id": project, "status": "failed", "updated_after": iso(NOW - timedelta(days=7)), "per_page": 40},
            pipelines,
        )
    ]
    tally: dict[str, int] = {}
    for pipeline in pipelines[:15]:
        jobs = []
        for name in set(rng.choices(flaky, weights, k=rng.randint(1, 3))):
            tally[name] = tally.get(name, 0) + 1
            started = datetime.fromisoformat(pipeline["created_at"].replace("Z", "+00:00"))
            jid = rng.randint(10**9, 10**10)
            jobs.append(
                {
                    "id": jid,
                    "status": "failed",
                    "stage": name.split(":")[0],
                    "name": name,
                    "ref": pipeline["ref"],
                    "tag": False,
                    "coverage": None,
                    "allow_failure": False,
                    "created_at": pipeline["created_at"],
                    "started_at": iso(started + timedelta(seconds=20)),
                    "finished_at": pipeline["updated_at"],
                    "erased_at": None,
                    "duration": rng.uniform(60, 1800),
                    "queued_duration": rng.uniform(0.5, 30),
                    "user": {
                        "id": 77,
                        "username": rng.choice(PEOPLE),
                        "name": "CI user",
                        "state": "active",
                        "locked": False,
                        "avatar_url": "https://secure.gravatar.com/avatar/x?s=80&d=identicon",
                        "web_url": "https://gitlab.com/ci-user",
                    },
                    "commit": {
                        "id": pipeline["sha"],
                        "short_id": pipeline["sha"][:8],
                        "created_at": pipeline["created_at"],
                        "parent_ids": [f"{rng.getrandbits(160):040x}"],
                        "title": sentence(rng, 1)[:60],
                        "message": sentence(rng, 2),
                        "author_name": "Ada Lovelace",
                        "author_email": "ada@acme.dev",
                        "authored_date": pipeline["created_at"],
                        "committer_name": "Ada Lovelace",
                        "committer_email": "ada@acme.dev",
                        "committed_date": pipeline["created_at"],
                        "trailers": {},
                        "extended_trailers": {},
                        "web_url": f"https://gitlab.com/{project}/-/commit/{pipeline['sha']}",
                    },
                    "pipeline": {
                        k: pipeline[k]
                        for k in (
                            "id",
                            "iid",
                            "project_id",
                            "sha",
                            "ref",
                            "status",
                            "source",
                            "created_at",
                            "updated_at",
                            "web_url",
                        )
                    },
                    "web_url": f"https://gitlab.com/{project}/-/jobs/{jid}",
                    "project": {"ci_job_token_scope_enabled": False},
                    "artifacts": [
                        {
                            "file_type": "trace",
                            "size": rng.randint(2000, 90000),
                            "filename": "job.log",
                            "file_format": None,
                        }
                    ],
                    "runner": {
                        "id": 12270,
                        "description": "shared-runner-2",
                        "ip_address": None,
                        "active": True,
                        "paused": False,
                        "is_shared": True,
                        "runner_type": "instance_type",
                        "name": "gitlab-runner",
                        "online": True,
                        "status": "online",
                    },
                    "runner_manager": None,
                    "artifacts_expire_at": None,
                    "archived": False,
                    "tag_list": ["docker", "linux"],
                    "failure_reason": "script_failure",
                }
            )
        calls.append(
            call(
                "gitlab.list_pipeline_jobs",
                {"project_id": project, "pipeline_id": str(pipeline["id"]), "scope": "failed"},
                jobs,
                turn=1,
            )
        )
    ranking = sorted(tally.items(), key=lambda item: -item[1])
    description = "Failed jobs across the last 15 failed pipelines on acme/platform (7 days):\n\n" + "\n".join(
        f"- `{name}`: failed in {count} pipelines" for name, count in ranking
    )
    issue = {
        "id": 148_000_221,
        "iid": 902,
        "project_id": 311,
        "title": "Flaky CI jobs this week",
        "description": description,
        "state": "opened",
        "created_at": iso(NOW),
        "updated_at": iso(NOW),
        "closed_at": None,
        "closed_by": None,
        "labels": ["ci", "flaky"],
        "milestone": None,
        "assignees": [],
        "author": {
            "id": 9,
            "username": ME,
            "name": "Ada Lovelace",
            "state": "active",
            "web_url": f"https://gitlab.com/{ME}",
        },
        "type": "ISSUE",
        "assignee": None,
        "user_notes_count": 0,
        "merge_requests_count": 0,
        "upvotes": 0,
        "downvotes": 0,
        "due_date": None,
        "confidential": False,
        "discussion_locked": None,
        "issue_type": "issue",
        "web_url": f"https://gitlab.com/{project}/-/issues/902",
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": None,
            "human_total_time_spent": None,
        },
        "task_completion_status": {"count": 0, "completed_count": 0},
        "has_tasks": True,
        "_links": {"self": "https://gitlab.com/api/v4/projects/311/issues/902"},
        "references": {"short": "#902", "relative": "#902", "full": f"{project}#902"},
        "severity": "UNKNOWN",
        "moved_to_id": None,
        "service_desk_reply_to": None,
    }
    calls.append(
        call(
            "gitlab.create_issue",
            {
                "project_id": project,
                "title": "Flaky CI jobs this week",
                "description": description,
                "labels": ["ci", "flaky"],
            },
            issue,
            free=["description"],
        )
    )
    return {
        "title": "Failed GitLab pipelines -> which jobs fail most -> issue (N+1 calls)",
        "task": "Look at the failed pipelines on acme/platform this week, find which jobs fail most, and open an issue listing them.",
        "calls": calls,
        "portal": [
            {"search_api": {"query": "list pipelines filtered by status", "limit": 3}},
            {"search_api": {"query": "list the jobs of a pipeline", "limit": 3}},
            {"search_api": {"query": "create a gitlab issue", "limit": 2}},
            {"execute_code": "gitlab_pipelines.py"},
        ],
    }


def sprint_report(rng: random.Random) -> dict[str, Any]:
    statuses = ["Done"] * 21 + ["In Progress"] * 9 + ["In Review"] * 6 + ["To Do"] * 8
    issues = [
        jira_issue(
            rng,
            f"WEB-{700 + i}",
            f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {rng.choice(VERBS)}",
            sentence(rng, rng.randint(2, 5)),
            status,
        )
        for i, status in enumerate(statuses)
    ]
    sprint = {"total": len(issues), "start_at": 0, "max_results": 50, "issues": issues}
    by_status: dict[str, int] = {}
    for issue in issues:
        by_status[issue["status"]["name"]] = by_status.get(issue["status"]["name"], 0) + 1
    content = (
        "## Sprint 42 report\n\n" + "\n".join(f"- {k}: {v}" for k, v in by_status.items()) + "\n\n### Not done\n\n"
    )
    content += "\n".join(
        f"- {i['key']} {i['summary']} ({i['status']['name']}, {i['assignee']['display_name']})"
        for i in issues
        if i["status"]["name"] != "Done"
    )
    page = {
        "message": "Page created successfully",
        "page": {
            "id": "884736021",
            "title": "Sprint 42 report",
            "type": "page",
            "created": iso(NOW),
            "updated": iso(NOW),
            "url": "https://example.atlassian.net/wiki/spaces/ENG/pages/884736021",
            "space": {"key": "ENG", "name": "Engineering"},
            "author": "Ada Lovelace",
            "version": 1,
            "attachments": [],
        },
    }
    return {
        "title": "Jira sprint -> Confluence status page",
        "task": "Write the status of sprint 42 (board 12, sprint id 3391) to a Confluence page in space ENG: counts by status and the unfinished issues.",
        "calls": [
            call("atlassian.jira_get_sprint_issues", {"sprint_id": "3391", "limit": 50}, sprint),
            call(
                "atlassian.confluence_create_page",
                {"space_key": "ENG", "title": "Sprint 42 report", "content": content},
                page,
                free=["content"],
            ),
        ],
        "portal": [
            {"search_api": {"query": "get the issues of a jira sprint"}},
            {"search_api": {"query": "create a confluence page", "detail": "signature"}},
            {"execute_code": "sprint_report.py"},
        ],
    }


def orders_to_excel(rng: random.Random) -> dict[str, Any]:
    rows = []
    for i in range(300):
        placed = ago(rng, 30)
        rows.append(
            {
                "order_id": 510000 + i,
                "placed_at": placed.isoformat(),
                "customer_email": f"buyer{rng.randint(1, 9999)}@example.com",
                "country": rng.choice(["US", "DE", "FR", "JP", "BR", "IN", "GB"]),
                "sku": f"SKU-{rng.randint(1000, 9999)}",
                "quantity": rng.randint(1, 40),
                "unit_price": round(rng.uniform(30, 400), 2),
                "total": 0.0,
                "status": rng.choice(["paid", "paid", "paid", "refunded", "shipped"]),
            }
        )
        rows[-1]["total"] = round(rows[-1]["quantity"] * rows[-1]["unit_price"], 2)
    big = [r for r in rows if r["total"] >= 1000]
    columns = list(rows[0])
    matrix = [columns] + [[r[c] for c in columns] for r in big]
    sql = (
        "SELECT order_id, placed_at, customer_email, country, sku, quantity, unit_price, total, status FROM orders "
        "WHERE placed_at >= now() - interval '30 days' AND total >= 1000 ORDER BY placed_at"
    )
    path = "/reports/big-orders-2026-11.xlsx"
    return {
        "title": "Copy rows: Postgres query -> Excel workbook",
        "task": "Put every order of the last 30 days with a total of $1,000 or more into a new workbook /reports/big-orders-2026-11.xlsx.",
        "calls": [
            call("postgres.query", {"sql": sql}, big),
            call(
                "excel.create_workbook",
                {"path": path, "sheets": ["Orders"]},
                f"Created {path} with sheets: Orders",
                "text",
            ),
            call(
                "excel.write_range",
                {"path": path, "sheet": "Orders", "at": "A1", "rows": matrix},
                f"Wrote {len(matrix)} rows x {len(columns)} columns to Orders!A1",
                "text",
            ),
        ],
        "portal": [
            {"search_api": {"query": "run a read-only sql query on postgres", "limit": 2}},
            {"search_api": {"query": "create an excel workbook and write rows to a sheet"}},
            {"execute_code": "orders_to_excel.py"},
        ],
    }


def research_to_notion(rng: random.Random) -> dict[str, Any]:
    topics = ["MCP gateways", "code mode for agents", "tool search at scale"]
    results = []
    for _i in range(10):
        domain = rng.choice(["blog.example.com", "docs.example.org", "news.example.net", "eng.example.io"])
        slug = "-".join(rng.sample(WORDS, 3))
        results.append(
            {
                "url": f"https://{domain}/{slug}",
                "title": f"{rng.choice(topics).title()}: {slug.replace('-', ' ')}",
                "description": sentence(rng, 2),
                "extra_snippets": [sentence(rng, 1) for _ in range(3)],
                "age": f"{rng.randint(1, 30)} days ago",
                "language": "en",
                "profile": {
                    "name": domain,
                    "url": f"https://{domain}",
                    "long_name": domain,
                    "img": f"https://imgs.search.brave.com/{slug}.png",
                },
            }
        )
    search = {
        "type": "search",
        "query": {"original": "MCP gateway code mode token savings"},
        "web": {"type": "search", "results": results},
    }
    calls = [
        call(
            "brave_search.brave_web_search",
            {"query": "MCP gateway code mode token savings", "count": 10},
            search,
            "json",
        )
    ]
    pages = []
    for _index, result in enumerate(results[:3]):
        body = "\n\n".join(f"## Section {k + 1}\n\n{sentence(rng, 8)}" for k in range(6))[:5000]
        text = f"Contents of {result['url']}:\n{body}"
        pages.append(text)
        calls.append(call("fetch.fetch", {"url": result["url"]}, text, "text", turn=1))
    summary = (
        "Three sources agree that exposing a search tool plus a code tool keeps the context small as the catalog "
        "grows; they differ on sandboxing. Sources: " + ", ".join(r["url"] for r in results[:3])
    )
    parent = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"
    page_args = {
        "parent": {"page_id": parent},
        "properties": {"title": [{"text": {"content": "Research: MCP gateways and code mode"}}]},
        "children": [
            {"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "text": {"content": summary}}]}}
        ],
    }
    created = {
        "object": "page",
        "id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
        "created_time": iso(NOW),
        "last_edited_time": iso(NOW),
        "created_by": {"object": "user", "id": "u-1"},
        "last_edited_by": {"object": "user", "id": "u-1"},
        "cover": None,
        "icon": None,
        "parent": {"type": "page_id", "page_id": parent},
        "archived": False,
        "in_trash": False,
        "properties": {
            "title": {
                "id": "title",
                "type": "title",
                "title": [
                    {
                        "type": "text",
                        "text": {"content": "Research: MCP gateways and code mode", "link": None},
                        "plain_text": "Research: MCP gateways and code mode",
                        "href": None,
                    }
                ],
            }
        },
        "url": "https://www.notion.so/Research-MCP-gateways-and-code-mode-7a6b5c4d3e2f4a1b9c8d7e6f5a4b3c2d",
        "public_url": None,
        "request_id": "5e4d3c2b-1a09-4876-8543-210fedcba987",
    }
    calls.append(call("notion.API-post-page", page_args, created, "json", free=["children"]))
    return {
        "title": "Web research -> read 3 pages -> Notion page (the model must read the text)",
        "task": "Research how MCP gateways use code mode to save tokens: read the top 3 web results and save a short summary with sources as a Notion page under page 1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b.",
        "calls": calls,
        "portal": [
            {"search_api": {"query": "web search and fetch a page", "detail": "signature"}},
            {"execute_code": "research_to_notion_1.py"},
            {"search_api": {"query": "create a notion page"}},
            {"execute_code": "research_to_notion_2.py"},
        ],
    }


WORKFLOWS = {
    "issues_to_slack": issues_to_slack,
    "pr_checks": pr_checks,
    "sentry_to_jira": sentry_to_jira,
    "stripe_to_hubspot": stripe_to_hubspot,
    "crashloop_pods": crashloop_pods,
    "gitlab_pipelines": gitlab_pipelines,
    "sprint_report": sprint_report,
    "orders_to_excel": orders_to_excel,
    "research_to_notion": research_to_notion,
}


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for name, build in WORKFLOWS.items():
        fixture = {"name": name, **build(random.Random(name))}
        path = FIXTURES / f"{name}.json"
        path.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent.parent)} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
