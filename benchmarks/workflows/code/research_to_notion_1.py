# Step 1: search, fetch the top 3 pages, print only what the model needs to read to write a summary.
import asyncio

found = await brave_search.brave_web_search(query="MCP gateway code mode token savings", count=10)
top = found["web"]["results"][:3]
pages = await asyncio.gather(*[fetch.fetch(url=r["url"]) for r in top])
for result, page in zip(top, pages):
    print(f"### {result['title']}\n{result['url']}\n{page[:1500]}\n")
