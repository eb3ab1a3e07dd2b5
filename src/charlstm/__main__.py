from charlstm.cli.app import main

main()
