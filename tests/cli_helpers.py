"""Running a command's `main(argv)` in the test process, as the shell would see it."""


def run_main(main, argv: list[str], capsys) -> tuple[int, str, str]:
  """(exit status, stdout, stderr) of `main(argv)`: its return value or SystemExit code, with a
  normal return of None read as status 0."""
  try:
    code = main(argv)
  except SystemExit as e:
    code = e.code
  captured = capsys.readouterr()
  return code or 0, captured.out, captured.err
