"""Gerrit's own command-line splitter (CommandFactoryProvider.split), not a POSIX shell.

Differences from shlex that matter: an unterminated quote is not an error (gerritlib's query() appends a stray
`"`), a backslash at the very end is literal, and an empty quoted word (`''`) produces no argument at all.
"""

from __future__ import annotations


def gerrit_split(command_line: str) -> list[str]:
    """Split an SSH exec string into argv exactly as Gerrit's sshd does."""
    words: list[str] = []
    in_single = in_double = False
    word: list[str] = []
    i, n = 0, len(command_line)
    while i < n:
        c = command_line[i]
        i += 1
        if c in " \t":
            if in_single or in_double:
                word.append(c)
            elif word:
                words.append("".join(word))
                word = []
        elif c == '"':
            if in_single:
                word.append(c)
            else:
                in_double = not in_double
        elif c == "'":
            if in_double:
                word.append(c)
            else:
                in_single = not in_single
        elif c == "\\":
            if in_single or i == n:
                word.append(c)
            else:
                word.append(command_line[i])
                i += 1
        else:
            word.append(c)
    if word:
        words.append("".join(word))
    return words
