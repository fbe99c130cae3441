"""`serve --ray`: the flags and the refusals that need no cluster (the pool itself: test_cluster.py)."""

from __future__ import annotations

from aa_engine.cli import build_parser, main


def test_ray_flags_parse_with_their_defaults():
    args = build_parser().parse_args(["serve", "--listen", "127.0.0.1:0", "--ray", "auto"])
    assert (args.ray, args.ray_max_failures, args.ray_max_workers, args.window_workers) == ("auto", 3, None, 1)


def test_ray_without_listen_is_refused_with_what_to_do(capsys):
    assert main(["serve", "--weights", "random-tiny", "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert "error: --ray needs --listen" in err and "hint: Add --listen HOST:PORT (docs/cluster.md)." in err
