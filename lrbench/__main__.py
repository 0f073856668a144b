from lrbench.entry import main

main()
