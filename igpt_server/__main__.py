from igpt_server.cli import main

main()
