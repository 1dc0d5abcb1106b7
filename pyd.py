"""Entry point for PyInstaller and for `python pyd.py`: no logic here."""
import sys

from pyd.cli import main

if __name__ == "__main__":
    sys.exit(main())
