# Step 2: the model has read the excerpts and wrote the summary; save it as a Notion page.
sources = [
    "https://news.example.net/billing-upload-migration",
    "https://blog.example.com/queue-payment-retry",
    "https://docs.example.org/session-webhook-gateway",
]
summary = (
    "Three sources agree that exposing a search tool plus a code tool keeps the context small as the catalog "
    "grows; they differ on sandboxing. Sources: " + ", ".join(sources)
)
page = await notion.API_post_page(
    parent={"page_id": "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"},
    properties={"title": [{"text": {"content": "Research: MCP gateways and code mode"}}]},
    children=[{"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "text": {"content": summary}}]}}],
)
print(page["url"])
