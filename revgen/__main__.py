"""`python -m revgen`: the same command line as `revgen`."""

from revgen.cli import main

if __name__ == "__main__":
    main()
