"""Script plumbing: the project's user errors (`errors`), the console + file logger (`log`), argument parsing
shared by the scripts (`options`) and the entry point that prints user errors, Ctrl-C and SIGTERM in one line
(`cli`). The lowest layer of `utils`: it imports nothing else of the project."""
