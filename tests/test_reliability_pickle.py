"""Defect 1 (issue 15): no file in ``checkpoint_dir`` is ever unpickled by a plain run.

RecBole's ``create_dataset`` and ``data_preparation`` ``pickle.load`` any
``<dataset>-<DatasetClass>.pth`` / ``<dataset>-for-<Model>-dataloader.pth`` they find. We plant
pickles whose payload writes a marker file and check the marker never appears.
"""

import os
import pickle

import pytest
from reliability_util import TIGER_SMALL, cli, one_line_error, write_config, write_sid_file


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def plant_pickles(checkpoint_dir, marker, models=("SASRec", "TIGER")):
    os.makedirs(checkpoint_dir, exist_ok=True)
    names = [f"tiny-{cls}.pth" for cls in ("Dataset", "SequentialDataset", "SemanticIDDataset")]
    names += [f"tiny-for-{model}-dataloader.pth" for model in models]
    for name in names:
        with open(os.path.join(checkpoint_dir, name), "wb") as f:
            pickle.dump(_Payload(marker), f)


@pytest.mark.parametrize("model", ["SASRec", "TIGER"])
def test_planted_pickles_never_run_on_a_plain_run(model, tiny_data, tmp_path):
    marker = str(tmp_path / "PAYLOAD_RAN")
    plant_pickles(str(tmp_path / "saved"), marker)
    extra = {}
    if model == "TIGER":
        extra = dict(TIGER_SMALL, sid_file=write_sid_file(tmp_path / "codes.json"))
    config = write_config(tmp_path, tiny_data, state="INFO", **extra)
    out = cli(tmp_path, f"--model={model}", "--dataset=tiny", f"--config_files={config}")
    assert not os.path.exists(marker), "a planted pickle was loaded and its payload ran"
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test result" in out.stdout + out.stderr


@pytest.mark.parametrize(
    "flag", ["--save_dataset=True", "--save_dataloaders=True", "--dataset_save_path=x.pth", "--dataloaders_save_path=x.pth"]
)
def test_asking_for_recbole_pickle_caches_is_a_clear_error(flag, tiny_data, tmp_path):
    marker = str(tmp_path / "PAYLOAD_RAN")
    with open(tmp_path / "x.pth", "wb") as f:
        pickle.dump(_Payload(marker), f)
    config = write_config(tmp_path, tiny_data)
    line = one_line_error(cli(tmp_path, "--model=SASRec", "--dataset=tiny", f"--config_files={config}", flag))
    assert flag.split("=")[0][2:] in line and "pickle" in line
    assert not os.path.exists(marker)
