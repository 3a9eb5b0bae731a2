from kerasflow.cli import main

main()
