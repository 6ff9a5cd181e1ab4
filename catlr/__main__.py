from catlr.cli import main

main()
