"""Reading datas_user.txt: encodings, comments, duplicates, impossible names."""

from __future__ import annotations

import codecs

import pytest

from bert4rec.users_file import UserFileError, parse_user_names, read_user_file

TEXT = """# my users
Alice
  bob  \t

alice   # same as line 2, other case
https://anilist.co/user/Carol/animelist
@Dave
two words
Eve!
日本語
Frank#inline comment
"""


def test_names_comments_and_duplicates():
    parsed = parse_user_names(TEXT)
    assert parsed.names == ["Alice", "bob", "Carol", "Dave", "Frank"]
    assert [(r.line, r.text) for r in parsed.repeated] == [(5, "alice")]
    assert [(b.line, b.text) for b in parsed.bad_lines] == [
        (8, "two words"),
        (9, "Eve!"),
        (10, "日本語"),
    ]
    assert "spaces" in parsed.bad_lines[0].reason
    assert "line 9: 'Eve!'" in str(parsed.bad_lines[1])


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8"),
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.replace("\n", "\r\n").encode("utf-8"),
        lambda t: codecs.BOM_UTF8 + t.replace("\n", "\r\n").encode("utf-8"),
        lambda t: t.replace("\n", "\r\n").encode("utf-16"),  # Notepad's "Unicode"
    ],
    ids=["utf8", "utf8-bom", "crlf", "bom-crlf", "utf16"],
)
def test_any_common_saving_reads_the_same(tmp_path, encode):
    path = tmp_path / "users.txt"
    path.write_bytes(encode(TEXT))
    parsed = read_user_file(path)
    assert parsed.names == ["Alice", "bob", "Carol", "Dave", "Frank"]
    assert [b.line for b in parsed.bad_lines] == [8, 9, 10]


def test_missing_and_unreadable_files_say_what_to_do(tmp_path):
    with pytest.raises(UserFileError, match=r"not found: .*nope\.txt.*one AniList user name"):
        read_user_file(tmp_path / "nope.txt")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Alice\nRené\n".encode("latin-1"))
    with pytest.raises(UserFileError, match="not UTF-8.*Save it as UTF-8"):
        read_user_file(latin)


def test_the_shipped_template_names_nobody(tmp_path):
    from conftest import ROOT

    parsed = read_user_file(ROOT / "datas_user.txt")
    assert parsed.names == [] and parsed.bad_lines == []
