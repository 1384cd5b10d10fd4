"""`python -m newsletter.cli.run ...` = the `newsletter` command, for environments without the console script."""

from newsletter.entry import main

if __name__ == "__main__":
    main()
