from catlr.entry import main

main()
