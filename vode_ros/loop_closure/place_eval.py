"""How well a global descriptor recognises revisited places in a sequence with ground truth.

Every ``step``-th frame is a keyframe. Each keyframe queries the keyframes at least ``gap``
frames older; its best-scoring one is a correct recognition when the two ground-truth camera
poses are within ``max_distance_m`` and their optical axes within ``max_angle_deg``. Reported:
recall@1 (queries that have a true revisit whose top candidate is correct), and precision /
recall over a threshold on the score (average precision, and the recall at 100 % precision),
where a query counts as a positive when its top candidate is correct.

Descriptors compared:

- ``bow``: bag of binary words over ORB (``BinaryVocabulary``), DBoW2's L1 score;
- ``bow_normalised``: the same score divided by the query's score with the previous keyframe
  (DBoW2's normalised similarity);
- ``encoder``: the depth network's encoder output (the deepest two stages), global-average
  pooled, concatenated and L2-normalised; cosine similarity.

    python -m vode_ros.loop_closure.place_eval /work/shared/data/7scenes-redkitchen

The ground truth is used to score, never to tune the back-end.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from vode_ros.loop_closure.features import OrbExtractor
from vode_ros.loop_closure.vocabulary import BinaryVocabulary, bow_score

ENCODER_OUTPUTS = ("/net/encoder/stages.2/stages.2.1/Relu_output_0",
                   "/net/encoder/stages.3/stages.3.0/Relu_output_0")


class EncoderDescriptor:
    """Pooled features of the depth model's encoder (an ONNX graph output added in memory)."""

    def __init__(self, model_path: str, outputs=ENCODER_OUTPUTS):
        import onnx
        import onnxruntime as ort

        from vode_ros.inference import OnnxModel
        m = onnx.load(model_path)
        have = {o.name for o in m.graph.output}
        for name in outputs:
            if name not in have:
                m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        self.session = ort.InferenceSession(m.SerializeToString(),
                                            providers=["CPUExecutionProvider"])
        self.outputs = list(outputs)
        self.spec = OnnxModel(model_path, "depth", ["CPUExecutionProvider"]).spec

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        from vode_ros.inference import to_tensor
        x = to_tensor(image_rgb, self.spec)
        name = self.session.get_inputs()[0].name
        feats = self.session.run(self.outputs, {name: x})
        v = np.concatenate([f.reshape(f.shape[1], -1).mean(axis=1) for f in feats])
        v = np.sign(v) * np.sqrt(np.abs(v))                  # power normalisation
        return (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32)


def _true_match(Pa, Pb, max_distance_m, max_angle_deg) -> bool:
    d = np.linalg.norm(Pa[:3, 3] - Pb[:3, 3])
    c = float(np.clip(Pa[:3, 2] @ Pb[:3, 2], -1, 1))
    return d < max_distance_m and np.degrees(np.arccos(c)) < max_angle_deg


def _average_precision(scores, correct, n_positive_queries):
    order = np.argsort(-np.asarray(scores))
    c = np.asarray(correct, bool)[order]
    tp = np.cumsum(c)
    precision = tp / np.arange(1, len(c) + 1)
    recall = tp / max(n_positive_queries, 1)
    ap = float(np.sum(precision[c]) / max(n_positive_queries, 1))
    full = precision >= 1.0 - 1e-12
    r100 = float(recall[full].max()) if full.any() else 0.0
    return ap, r100


def evaluate(path: str, step: int = 5, gap: int = 100, max_distance_m: float = 0.4,
             max_angle_deg: float = 30.0, vocabulary: str | None = None,
             depth_model: str | None = None, n_features: int = 1000) -> dict:
    from vode_ros.datasets import open_sequence
    from vode_ros.loop_closure.vocabulary import DEFAULT_VOCABULARY
    from vode_ros.pipeline import resolve_path

    seq = open_sequence(path, frames=f"::{step}")
    vocab = BinaryVocabulary.load(resolve_path(vocabulary or DEFAULT_VOCABULARY))
    enc = EncoderDescriptor(str(resolve_path(depth_model or "models/depth.onnx")))
    orb = OrbExtractor(n_features)
    idx, poses, bows, encs = [], [], [], []
    for f in seq:
        if f.gt_pose is None:
            continue
        idx.append(f.index)
        poses.append(f.gt_pose)
        bows.append(vocab.transform(orb.extract(f.image, f.camera).descriptors))
        encs.append(enc(f.image))
    idx, bows, encs = np.array(idx), np.array(bows), np.array(encs)
    results = {}
    for name in ("bow", "bow_normalised", "encoder"):
        scores, correct, n_pos, hits = [], [], 0, 0
        for q in range(1, len(idx)):
            cand = np.where(idx <= idx[q] - gap)[0]
            if not len(cand):
                continue
            if name == "encoder":
                s = encs[cand] @ encs[q]
            else:
                s = bow_score(bows[q], bows[cand])
                if name == "bow_normalised":
                    s = s / max(float(bow_score(bows[q], bows[q - 1:q])[0]), 1e-6)
            best = int(np.argmax(s))
            has = any(_true_match(poses[q], poses[c], max_distance_m, max_angle_deg)
                      for c in cand)
            ok = _true_match(poses[q], poses[cand[best]], max_distance_m, max_angle_deg)
            n_pos += has
            hits += ok and has
            scores.append(float(s[best]))
            correct.append(ok)
        ap, r100 = _average_precision(scores, correct, n_pos)
        results[name] = {"recall_at_1": hits / max(n_pos, 1), "average_precision": ap,
                         "recall_at_100_precision": r100, "queries": len(scores),
                         "queries_with_revisit": n_pos}
    return {"input": path, "keyframe_step": step, "gap_frames": gap,
            "true_match": f"< {max_distance_m} m and < {max_angle_deg} deg", "results": results}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("--step", type=int, default=5)
    ap.add_argument("--gap", type=int, default=100)
    ap.add_argument("--vocabulary")
    ap.add_argument("--depth-model")
    a = ap.parse_args(argv)
    out = evaluate(a.input, a.step, a.gap, vocabulary=a.vocabulary, depth_model=a.depth_model)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
