"""`python -m sepgan.train experiment=NAME [key=value ...]`: the training entry point (see `sepgan.commands.train`)."""

from sepgan.commands.train import main

if __name__ == "__main__":
    main()
