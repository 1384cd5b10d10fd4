"""`python -m newsletter.cli.run ...` = the `newsletter` command, for environments without the console script."""

from newsletter.cli import main

if __name__ == "__main__":
    main()
