from appban.cli import main

main()
