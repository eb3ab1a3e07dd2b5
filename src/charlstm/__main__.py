from charlstm.cli import main

main()
