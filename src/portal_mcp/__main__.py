from portal_mcp.cli import main

main()
