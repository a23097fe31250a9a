from gantool.cli.main import main

main()
