"""Server routing in big catalogs: a word several servers share names them all, the more specific phrase picks
one of them, and a word that only starts a server's tool names ("browser") does not name it by itself."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex, headline, server_aliases
from portal_mcp.catalog.search.query import endings
from portal_mcp.catalog.search.text import document


def tool(name: str, description: str, **params: str) -> Tool:
    properties: dict[str, Any] = {key: {"type": "string", "description": text} for key, text in params.items()}
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": properties})


def issue_tools(where: str) -> list[Tool]:
    return [
        tool("create_issue", f"Create a new issue in a {where} repository.", title="Issue title", body="Issue body"),
        tool("list_issues", f"List issues in a {where} repository.", state="open or closed"),
        tool("create_pull_request", f"Open a pull request in a {where} repository.", head="Branch"),
    ]


# A catalog like the big ones: servers sharing a word (github, aws, kubernetes), tracker servers that file issues
# too, and three browser automation servers of which only one prefixes its tools with `browser_`.
CATALOG = Catalog.build(
    {
        "github": issue_tools("GitHub"),
        "github_enterprise": [
            *issue_tools("GitHub Enterprise Server"),
            tool("get_audit_log", "Get the audit log of an enterprise."),
        ],
        "gitlab": [
            tool("create_issue", "Create an issue for a bug: a new issue with a title, a bug report issue."),
            tool("list_issues", "List the issues of a project."),
        ],
        "linear": [
            tool("create_issue", "Create an issue, a bug or a task on a team board, for a bug report."),
            tool("list_teams", "List teams."),
        ],
        "aws_billing_cost": [
            tool("get_cost_and_usage", "Cost Explorer: how much was spent, by service and month.", month="Month"),
            tool("get_cost_forecast", "Forecast of the spend of the coming months."),
        ],
        "aws_pricing": [tool("get_pricing", "The price list of a service: what it would cost per hour.")],
        "aws_iam": [
            tool("create_access_key", "Create a new access key for a user (rotate keys).", user_name="User name"),
            tool("list_users", "List the users of the account."),
        ],
        "aws_well_architected_security": [
            tool("check_security_services", "Check that the security services of an account are enabled."),
            tool("check_network_security", "Check the network security of an account."),
        ],
        "kubernetes": [
            tool("kubectl_get", "Get resources of a cluster: pods, deployments, services."),
            tool("kubectl_logs", "Logs of a pod's container."),
            tool("kubectl_delete", "Delete a resource."),
        ],
        "kubernetes_containers": [
            tool("pods_list", "List the pods of a namespace."),
            tool("pods_log", "The log of a pod's container."),
        ],
        "playwright": [
            tool("browser_navigate", "Navigate to a URL.", url="URL"),
            tool("browser_take_screenshot", "Take a screenshot of the current page."),
            tool("browser_click", "Click an element on the page."),
            tool("browser_type", "Type text into an element."),
            tool("browser_hover", "Hover over an element."),
            tool("browser_press_key", "Press a key."),
            tool("browser_close", "Close the page."),
            tool("browser_tabs", "List, open or close tabs."),
        ],
        # Their headlines do not say "browser" (so it looks like Playwright's name there), their prose does.
        "puppeteer": [
            tool("puppeteer_navigate", "Navigate to a URL. Opens the browser first.", url="URL"),
            tool("puppeteer_screenshot", "Take a screenshot of the page. The browser must be open."),
            tool("puppeteer_click", "Click an element of the page. Uses the browser's mouse."),
        ],
        "chrome_devtools": [
            tool("navigate_page", "Open a URL in the selected page. The browser is Chrome.", url="URL"),
            tool("take_screenshot", "Take a screenshot of the page or of an element. Any browser page."),
            tool("performance_start_trace", "Record a performance trace of the page. In the browser."),
        ],
    }
)
INDEX = SearchIndex(CATALOG)


def top(query: str, limit: int = 3) -> list[str]:
    return [hit.entry.qualified_name for hit in INDEX.search(query, limit=limit)]


def test_a_word_several_servers_carry_names_them_all_and_a_prefix_only_when_the_prose_does_not_say_it() -> None:
    entries = list(CATALOG)
    aliases = server_aliases(entries, [headline(e) for e in entries], [document(e) for e in entries])
    assert aliases["github"] == {"github", "github_enterprise"}
    assert aliases["aws"] == {"aws_billing_cost", "aws_pricing", "aws_iam", "aws_well_architected_security"}
    assert aliases["kubernet"] == {"kubernetes", "kubernetes_containers"}
    assert aliases["kubectl"] == {"kubernetes"}  # a prefix no other tool's text says: a name
    assert aliases["puppeteer"] == {"puppeteer"}
    assert "browser" not in aliases  # Playwright's prefix, but the other browser servers' prose says it too


def test_a_query_naming_a_shared_word_gets_the_servers_carrying_it_before_other_trackers() -> None:
    first_two = set(top("create an issue on github for the bug report", limit=2))
    assert first_two == {"github.create_issue", "github_enterprise.create_issue"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("list the issues on github enterprise", "github_enterprise.list_issues"),
        ("aws cost explorer: what did we spend in march", "aws_billing_cost.get_cost_and_usage"),
        ("list the pods with kubernetes containers", "kubernetes_containers.pods_list"),
        # "security" is a word of a server's name, but said away from "aws" it is not a phrase naming that server.
        ("rotate the access key of an aws user for security", "aws_iam.create_access_key"),
    ],
)
def test_a_more_specific_phrase_prefers_the_more_specific_server(query: str, expected: str) -> None:
    assert top(query, limit=1) == [expected]


def test_a_generic_tool_name_prefix_does_not_route_to_its_server_but_the_server_s_name_does() -> None:
    # Every browser server's screenshot tool fits; Playwright's own tools (tabs, close) do not come before them.
    screenshots = {
        "playwright.browser_take_screenshot",
        "puppeteer.puppeteer_screenshot",
        "chrome_devtools.take_screenshot",
    }
    assert screenshots <= set(top("open the browser and take a screenshot of the page", limit=5))
    assert set(top("open the browser and click the login button", limit=2)) == {
        "playwright.browser_click",
        "puppeteer.puppeteer_click",
    }
    assert top("take a screenshot of the page with playwright", limit=1) == ["playwright.browser_take_screenshot"]


def test_a_file_s_extension_or_a_domain_s_ending_names_no_server() -> None:
    assert endings("edit main.py, then check tomorrow.io") == {"py", "io"}
    assert endings("edit main.py with the py tools") == set()  # said as a word of its own too: it may be a name
    catalog = Catalog.build(
        {
            "elasticsearch_py": [
                tool("put_alias", "Point an alias at an index.", alias="Alias name"),
                tool("get_document", "Get a document of an index by its id."),
            ],
            "files": [tool("edit_file", "Change lines of a text file on disk.", path="File path")],
        }
    )
    index = SearchIndex(catalog)
    assert index.search("change a few lines in settings.py", limit=1)[0].entry.qualified_name == "files.edit_file"
    assert index.search("get a document with the py server", limit=1)[0].entry.server == "elasticsearch_py"
