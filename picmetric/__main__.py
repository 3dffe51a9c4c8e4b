from picmetric.cli import main

main()
