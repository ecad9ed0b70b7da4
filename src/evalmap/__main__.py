"""`python -m evalmap ...` is the `evalmap` command."""

from evalmap.cli import main

if __name__ == "__main__":
    main()
