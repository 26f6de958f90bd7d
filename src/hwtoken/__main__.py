from hwtoken.cli import main

main()
