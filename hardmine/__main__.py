"""``python -m hardmine`` (and ``torchrun ... -m hardmine``) runs the CLI."""

from hardmine.cli import main

main()
