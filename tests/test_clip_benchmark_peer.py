"""Correctness anchor: on the same tiny open_clip model and the same data, our zero-shot accuracy and
retrieval recall equal clip_benchmark's own metric functions (to 0.1 point; in practice exactly)."""
from __future__ import annotations

import pytest
import torch

clip_benchmark = pytest.importorskip("clip_benchmark")

from eval_suite.benchmarks import create_benchmark  # noqa: E402
from tests.fixtures import make_benchmark_fixtures as F  # noqa: E402


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, images, targets, transform, classes=None):
        self.images, self.targets, self.transform, self.classes = images, targets, transform, classes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i].open()), self.targets[i]


@pytest.fixture(scope="module")
def backbone(tiny_open_clip_dir):
    from cultureclip.backbone import create_backbone

    torch.set_num_threads(1)
    return create_backbone(str(tiny_open_clip_dir))


def _accuracy_numpy2(output, target, topk=(1,)):
    """clip_benchmark 1.6.2's `accuracy` with `.item()`: its `float(1-element array)` raises on numpy>=2.4."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def test_zeroshot_classification_matches_clip_benchmark(backbone, tmp_path, monkeypatch):
    from clip_benchmark.metrics import zeroshot_classification as cb_zsc

    monkeypatch.setattr(cb_zsc, "accuracy", _accuracy_numpy2)

    from cultureclip.inference import Embedder

    classes = ["kimono", "hanbok", "sari", "kilt", "poncho", "dashiki"]
    root = F.make_wds_classification(tmp_path / "wds", classes, per_class=4)
    bench = create_benchmark("imagenet1k", root=root)
    data = bench.load()
    ours = bench.evaluate(Embedder(backbone, batch_size=8), n_boot=0, progress=False).metrics

    ds = _ListDataset(data.images, [int(x) for x in data.labels], backbone.preprocess_eval, data.classnames)
    loader = torch.utils.data.DataLoader(ds, batch_size=5)
    peer = cb_zsc.evaluate(backbone, loader, backbone.tokenize, data.classnames, data.templates, "cpu", amp=False)
    for k in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours[k] == pytest.approx(peer[k], abs=1e-3), k
    assert 0 <= ours["acc1"] <= 1 and ours["acc5"] >= ours["acc1"]


def test_zeroshot_retrieval_matches_clip_benchmark(backbone, tmp_path):
    from clip_benchmark.metrics import zeroshot_retrieval as cb_zsr

    from cultureclip.inference import Embedder

    bench = create_benchmark("flickr30k", root=F.make_karpathy(tmp_path / "k", "flickr30k"))
    data = bench.load()
    ours = bench.evaluate(Embedder(backbone, batch_size=4), n_boot=0, progress=False).metrics

    ds = _ListDataset(data.images, data.captions, backbone.preprocess_eval)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=lambda b: (torch.stack([x[0] for x in b]),
                                                                                 [x[1] for x in b]))
    peer = cb_zsr.evaluate(backbone, loader, backbone.tokenize, "cpu", amp=False, recall_k_list=[1, 5])
    for k in ("image_retrieval_recall@1", "text_retrieval_recall@1", "image_retrieval_recall@5",
              "text_retrieval_recall@5"):
        assert ours[k] == pytest.approx(peer[k], abs=1e-3), k
