"""``python -m pathlib_pw run|verify``: compute a small profile into a scratch results folder, then verify it."""

from __future__ import annotations

import json

import pytest

from pathlib_pw.__main__ import main
from pathlib_pw.runner import cache


def test_run_then_verify_smoke_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    assert main(["run", "qualitative", "--profile", "smoke"]) == 0
    header = json.loads((tmp_path / "smoke" / "qualitative" / "config.json").read_text())
    assert header["config"]["inputs"]["images"] == ["chelsea", "coffee"] and header["profile"] == "smoke"
    assert main(["verify", "qualitative", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "qualitative/smoke: matches exactly" in out and "threshold decisions replayed: 8" in out  # both images
    # --images computes a variation for the caller and never overwrites the profile's cache
    before = (tmp_path / "smoke" / "qualitative" / "arrays.npz").stat().st_mtime_ns
    assert main(["run", "qualitative", "--profile", "smoke", "--images", "1", "--force"]) == 0
    assert (tmp_path / "smoke" / "qualitative" / "arrays.npz").stat().st_mtime_ns == before


def test_unknown_experiment_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["run", "no_such_experiment"])
    assert "invalid choice" in capsys.readouterr().err


def test_missing_inputs_are_listed_at_once_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv("PATHLIB_PW_IMAGENET_VAL", raising=False)
    monkeypatch.delenv("PATHLIB_PW_CIFAR10", raising=False)
    assert main(["run", "all", "--profile", "paper"]) == 2
    err = capsys.readouterr().err
    entries = err.split("\n- ")[1:]  # one entry per missing input, each listed once
    assert len(entries) == 4
    for needed in ("vgg16-397923af.pth", "resnet50-0676ba61.pth", "--imagenet-val DIR", "--cifar10 DIR"):
        assert sum(needed in entry for entry in entries) == 1, needed
    assert not (tmp_path / "results").exists(), "work started before the inputs were checked"
    # a folder named on the command line counts (it is only looked at, not read)
    (tmp_path / "cifar").mkdir()
    assert main(["run", "roar", "--profile", "paper", "--cifar10", str(tmp_path / "cifar")]) == 2
    assert "CIFAR-10" in capsys.readouterr().err  # an empty folder is still reported, with the reason


def _usage_error(capsys, argv, command):
    """Run ``argv``, expecting a one-line usage error of ``command``: exit status 2, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and err.startswith("usage: python -m pathlib_pw " + command), err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"python -m pathlib_pw {command}: error: "), err
    return message


@pytest.mark.parametrize("command", ["run", "verify"])
@pytest.mark.parametrize("images", ["0", "-1"])
def test_images_must_be_positive(command, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    message = _usage_error(capsys, [command, "qualitative", "--profile", "smoke", "--images", images], command)
    assert message.endswith(f"--images must be a positive int, got {images}")
    assert not any(tmp_path.iterdir()), "work started before the arguments were checked"


@pytest.mark.parametrize("command", ["run", "verify"])
def test_unknown_device_names_what_is_accepted(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    message = _usage_error(capsys, [command, "qualitative", "--profile", "smoke", "--device", "bogus"], command)
    assert "--device must be cpu, cuda or cuda:N" in message and "'bogus'" in message


def test_cuda_without_a_gpu_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    message = _usage_error(capsys, ["run", "qualitative", "--profile", "smoke", "--device", "cuda"], "run")
    assert "--device cuda: no CUDA GPU is visible here" in message


@pytest.mark.parametrize("flag", ["--imagenet-val", "--cifar10"])
@pytest.mark.parametrize("command", ["run", "verify"])
def test_data_folders_that_do_not_exist_are_refused(command, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    missing = tmp_path / "nonexistent"
    message = _usage_error(capsys, [command, "roar", "--profile", "smoke", flag, str(missing)], command)
    assert f"{flag} {missing}: does not exist" in message
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "is not a folder" in _usage_error(capsys, [command, "roar", "--profile", "smoke", flag, str(a_file)], command)


def test_verify_without_a_cache_names_the_folder_and_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    message = _usage_error(capsys, ["verify", "maps_vs_sparsity", "--profile", "smoke"], "verify")
    assert str(tmp_path / "smoke" / "maps_vs_sparsity") in message
    assert "`python -m pathlib_pw run maps_vs_sparsity --profile smoke`" in message


def test_a_cache_hit_says_cached_and_verify_shows_progress_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    assert main(["run", "maps_vs_sparsity", "--profile", "smoke", "--quiet"]) == 0
    header = json.loads((tmp_path / "smoke" / "maps_vs_sparsity" / "config.json").read_text())
    fresh = capsys.readouterr().out.strip()
    assert fresh == f"maps_vs_sparsity/smoke: computed in {header['seconds']} s on cpu"
    assert main(["run", "maps_vs_sparsity", "--profile", "smoke"]) == 0
    again = capsys.readouterr().out.strip()
    assert again == f"maps_vs_sparsity/smoke: cached (computed in {header['seconds']} s on cpu, {header['date']})"
    # verify: a bar on stderr unless --quiet, and the same report either way
    assert main(["verify", "maps_vs_sparsity", "--profile", "smoke"]) == 0
    shown = capsys.readouterr()
    n = len(cache.load(tmp_path / "smoke" / "maps_vs_sparsity").arrays)
    assert "maps_vs_sparsity arrays: 100%" in shown.err and f" {n}/{n} [" in shown.err  # every array compared
    assert "100%" not in shown.out
    assert main(["verify", "maps_vs_sparsity", "--profile", "smoke", "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == shown.out
    assert "maps_vs_sparsity/smoke: matches exactly" in quiet.out
    # a cache of another configuration: verify says so and how to recompute it
    (tmp_path / "smoke" / "maps_vs_sparsity" / "config.json").write_text(json.dumps({**header, "config_hash": "0" * 16}))
    message = _usage_error(capsys, ["verify", "maps_vs_sparsity", "--profile", "smoke"], "verify")
    assert "another configuration" in message and "--images" not in message
    with pytest.raises(SystemExit):
        main(["verify", "maps_vs_sparsity", "--profile", "smoke", "--images", "2"])


def test_help_is_plain_text_with_defaults_and_every_experiment(capsys):
    from pathlib_pw import experiments

    for argv in (["--help"], ["run", "--help"], ["verify", "--help"], ["explain", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, argv
        if argv != ["--help"]:
            assert "default" in text, argv
        if argv[0] in ("run", "verify"):
            lines = text.splitlines()
            for name in experiments.EXPERIMENTS:
                line = [line for line in lines if line.strip().startswith(name + " ")]
                assert len(line) == 1 and line[0].rstrip().endswith("]"), name  # what it computes [its cost]
