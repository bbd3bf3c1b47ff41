"""A bag of binary words over ORB descriptors (DBoW2, Galvez-Lopez and Tardos, T-RO 2012).

The vocabulary is a tree of binary words: ``branching`` children per node over ``levels``
levels, each node's children found by k-majority clustering of the descriptors that reached it
(the binary counterpart of k-means: assignment by Hamming distance, centres by per-bit majority
vote). The leaves are the words (up to ``branching ** levels``), each with an inverse document
frequency learnt with the tree. A descriptor descends the tree to its word (``levels`` x
``branching`` Hamming distances); an image becomes a TF-IDF weighted, L1-normalised histogram
of its words, and two images score ``1 - 0.5 |v1 - v2|_1`` in [0, 1] (DBoW2's L1 score).

Many words matter: with ~1000 words, 1000 ORB descriptors of any image touch ~40 % of them and
unrelated images score almost as high as a revisit.

Train one with ``python -m vode_ros.loop_closure.vocabulary --out FILE INPUT...`` (images, image
folders or anything ``open_sequence`` reads).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from vode_ros.errors import VodeError
from vode_ros.files import atomic_path

DEFAULT_VOCABULARY = "models/orb_vocabulary.npz"


POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint16)


class BinaryVocabulary:
    """A tree of binary words: ``nodes`` (N, 32) uint8 holds every level's centres, level by
    level (level l has ``branching ** l`` slots, children of slot i at i * branching + j),
    ``valid`` marks the slots in use; the leaves (last level) are the words, ``idf`` their
    weights."""

    def __init__(self, nodes: np.ndarray, valid: np.ndarray, idf: np.ndarray, branching: int,
                 levels: int, info: str = ""):
        nodes = np.ascontiguousarray(nodes, np.uint8)
        valid = np.asarray(valid, bool).reshape(-1)
        idf = np.asarray(idf, np.float32).reshape(-1)
        sizes = [branching ** lv for lv in range(1, levels + 1)]
        if branching < 2 or levels < 1 or nodes.ndim != 2 or nodes.shape[1] != 32 or \
                len(nodes) != sum(sizes) or len(valid) != len(nodes) or len(idf) != sizes[-1]:
            raise VodeError(f"a binary vocabulary tree of branching {branching} and {levels} "
                            f"levels needs {sum(sizes)} (x32 uint8) nodes and {sizes[-1]} IDF "
                            f"weights, got nodes {nodes.shape}, {len(valid)} flags and "
                            f"{len(idf)} weights")
        self.nodes, self.valid, self.idf, self.info = nodes, valid, idf, info
        self.branching, self.levels = int(branching), int(levels)
        self._offsets = np.r_[0, np.cumsum(sizes)]

    def __len__(self) -> int:
        return len(self.idf)

    def assign(self, descriptors: np.ndarray) -> np.ndarray:
        """The word (leaf index) of each descriptor, by descent of the tree."""
        d = np.ascontiguousarray(descriptors, np.uint8)
        if self.levels == 1 and len(d):         # flat: one brute-force match (OpenCV)
            idx, _ = _hamming_nearest(d, self.nodes[self.valid])
            return np.flatnonzero(self.valid)[idx]
        cur = np.zeros(len(d), np.int64)
        k = self.branching
        for lv in range(self.levels):
            children = cur[:, None] * k + np.arange(k)[None, :]          # slots at level lv
            slots = self._offsets[lv] + children
            dist = POPCOUNT[self.nodes[slots] ^ d[:, None, :]].sum(axis=2, dtype=np.int32)
            dist[~self.valid[slots]] = 1 << 20
            cur = children[np.arange(len(d)), np.argmin(dist, axis=1)]
        return cur

    def transform(self, descriptors: np.ndarray) -> np.ndarray:
        """The image's TF-IDF bag-of-words vector (K,) float32, L1-normalised (zeros if empty)."""
        v = np.zeros(len(self.idf), np.float32)
        if len(descriptors) == 0:
            return v
        counts = np.bincount(self.assign(descriptors), minlength=len(self.idf))
        v = counts.astype(np.float32) / len(descriptors) * self.idf
        s = float(v.sum())
        return v / s if s > 0 else v

    # -- files -----------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the tree (npz) to ``path`` atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, nodes=self.nodes, valid=self.valid, idf=self.idf,
                                branching=self.branching, levels=self.levels,
                                info=np.array(self.info))

    @classmethod
    def load(cls, path) -> "BinaryVocabulary":
        try:
            with np.load(path) as z:
                return cls(z["nodes"], z["valid"], z["idf"], int(z["branching"]),
                           int(z["levels"]), str(z["info"]) if "info" in z else "")
        except FileNotFoundError:
            raise VodeError(f"ORB vocabulary '{path}' does not exist; set "
                            "loop_closure.vocabulary to a file written by `python -m "
                            "vode_ros.loop_closure.vocabulary`") from None
        except (KeyError, ValueError, OSError) as exc:
            raise VodeError(f"'{path}' is not an ORB vocabulary tree (npz with 'nodes', 'valid', "
                            f"'idf', 'branching', 'levels'): {exc}") from None


    def transform_sparse(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``transform`` as (word indices int32, weights float32) of its non-zero entries."""
        v = self.transform(descriptors)
        idx = np.flatnonzero(v).astype(np.int32)
        return idx, v[idx]


class BowDatabase:
    """Sparse bag-of-words vectors, one row per keyframe (CSR arrays grown by doubling), scored
    all at once against a query: ``sum_w min(q_w, v_w)``, which equals DBoW2's L1 score
    ``1 - 0.5 |q - v|_1`` for L1-normalised non-negative vectors."""

    def __init__(self, size: int):
        self.size = int(size)
        self.indptr = [0]
        self.indices = np.zeros(1024, np.int32)
        self.data = np.zeros(1024, np.float32)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def add(self, idx: np.ndarray, val: np.ndarray) -> int:
        n0 = self.indptr[-1]
        n1 = n0 + len(idx)
        if n1 > len(self.indices):
            cap = max(n1, 2 * len(self.indices))
            self.indices = np.resize(self.indices, cap)
            self.data = np.resize(self.data, cap)
        self.indices[n0:n1], self.data[n0:n1] = idx, val
        self.indptr.append(n1)
        return len(self) - 1

    def dense(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        q = np.zeros(self.size, np.float32)
        q[idx] = val
        return q

    def scores(self, query: np.ndarray, rows: int | None = None) -> np.ndarray:
        """L1 scores of the dense ``query`` against the first ``rows`` rows (all by default)."""
        rows = len(self) if rows is None else rows
        if rows <= 0:
            return np.zeros(0, np.float32)
        ptr = np.asarray(self.indptr[:rows + 1])
        nnz = ptr[-1]
        vals = np.minimum(self.data[:nnz], query[self.indices[:nnz]])
        csum = np.r_[0.0, np.cumsum(vals, dtype=np.float64)]
        return (csum[ptr[1:]] - csum[ptr[:-1]]).astype(np.float32)


def bow_score(query: np.ndarray, database: np.ndarray) -> np.ndarray:
    """DBoW2's L1 score of one L1-normalised vector against rows of ``database``: in [0, 1]."""
    database = np.atleast_2d(database)
    if database.size == 0:
        return np.zeros(0, np.float32)
    return 1.0 - 0.5 * np.abs(database - query[None, :]).sum(axis=1)


# -- training ------------------------------------------------------------------------------------
def _hamming_nearest(desc: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).match(desc, centres)
    idx = np.empty(len(desc), np.int64)
    dist = np.empty(len(desc), np.float32)
    for m in matches:
        idx[m.queryIdx] = m.trainIdx
        dist[m.queryIdx] = m.distance
    return idx, dist


def k_majority(descriptors: np.ndarray, k: int, iterations: int = 12, seed: int = 0
               ) -> np.ndarray:
    """K binary centres of ``descriptors`` (N, 32) uint8: k-means++ seeding by Hamming
    distance, then alternating nearest-centre assignment and per-bit majority."""
    desc = np.ascontiguousarray(descriptors, np.uint8)
    n = len(desc)
    if n < k:
        raise VodeError(f"k-majority needs at least k={k} descriptors, got {n}")
    rng = np.random.default_rng(seed)
    centres = [desc[rng.integers(n)]]
    d2 = None
    # k-means++ in batches of candidates: exact seeding costs k passes over the data
    batch = max(1, k // 64)
    while len(centres) < k:
        _, dist = _hamming_nearest(desc, np.array(centres))
        d2 = dist.astype(np.float64) ** 2
        p = d2 / d2.sum() if d2.sum() > 0 else None
        take = rng.choice(n, size=min(batch, k - len(centres)), replace=False, p=p)
        centres.extend(desc[take])
    C = np.array(centres, np.uint8)
    bits = np.unpackbits(desc, axis=1)
    for _ in range(iterations):
        idx, _ = _hamming_nearest(desc, C)
        counts = np.bincount(idx, minlength=k)
        sums = np.zeros((k, 256), np.int64)
        np.add.at(sums, idx, bits)
        new = np.packbits(sums * 2 > counts[:, None], axis=1)
        empty = counts == 0
        if empty.any():                       # re-seed empty clusters on random descriptors
            new[empty] = desc[rng.choice(n, int(empty.sum()), replace=False)]
        if np.array_equal(new, C):
            break
        C = new
    return C


def train_vocabulary(descriptor_sets: list[np.ndarray], branching: int = 10, levels: int = 4,
                     iterations: int = 10, seed: int = 0, info: str = "") -> BinaryVocabulary:
    """A vocabulary tree by hierarchical k-majority over all descriptors;
    IDF = ln(N images / images with the word) (0 for a word no training image has)."""
    sets = [np.asarray(d, np.uint8) for d in descriptor_sets if len(d)]
    if not sets:
        raise VodeError("no descriptors to train a vocabulary from")
    k = branching
    sizes = [k ** lv for lv in range(1, levels + 1)]
    offsets = np.r_[0, np.cumsum(sizes)]
    nodes = np.zeros((offsets[-1], 32), np.uint8)
    valid = np.zeros(offsets[-1], bool)
    members = {0: np.concatenate(sets)}                # slot at the level above -> descriptors
    for lv in range(levels):
        nxt = {}
        for parent, desc in members.items():
            if len(desc) == 0:
                continue
            if len(desc) <= k:
                centres = np.unique(desc, axis=0)
            else:
                centres = k_majority(desc, k, iterations, seed + parent)
            idx, _ = _hamming_nearest(desc, centres)
            for j in range(len(centres)):
                slot = parent * k + j
                nodes[offsets[lv] + slot] = centres[j]
                valid[offsets[lv] + slot] = True
                nxt[slot] = desc[idx == j]
        members = nxt
    vocab = BinaryVocabulary(nodes, valid, np.zeros(sizes[-1], np.float32), k, levels, info)
    df = np.zeros(sizes[-1], np.int64)
    for d in sets:
        df[np.unique(vocab.assign(d))] += 1
    vocab.idf = np.where(df > 0, np.log(len(sets) / np.maximum(df, 1)), 0.0).astype(np.float32)
    return vocab


def _images_of(path: str, step: int):
    p = Path(path)
    exts = {".png", ".jpg", ".jpeg", ".bmp"}
    if p.is_file() and p.suffix.lower() in exts:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            yield img
        return
    try:
        from vode_ros.datasets import open_sequence
        seq = open_sequence(str(p), frames=f"::{step}")
        for f in seq:
            yield cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY)
        return
    except VodeError:
        pass
    if p.is_dir():
        for q in sorted(p.rglob("*"))[::step]:
            if q.suffix.lower() in exts:
                img = cv2.imread(str(q), cv2.IMREAD_GRAYSCALE)
                if img is not None:
                    yield img


def main(argv=None) -> int:
    from vode_ros.camera import Camera
    from vode_ros.loop_closure.features import OrbExtractor

    ap = argparse.ArgumentParser(description="Train an ORB binary vocabulary (k-majority).")
    ap.add_argument("inputs", nargs="+", help="images, image folders or sequences")
    ap.add_argument("--out", required=True)
    ap.add_argument("--branching", type=int, default=10)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--max-pixels", type=int, default=307200)
    ap.add_argument("--step", type=int, default=1, help="use every Nth frame of a sequence")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    orb = OrbExtractor(a.features, a.max_pixels)
    sets = []
    for inp in a.inputs:
        n0 = len(sets)
        for grey in _images_of(inp, a.step):
            h, w = grey.shape
            sets.append(orb.extract(grey, Camera(1.0, 1.0, 0.0, 0.0, w, h)).descriptors)
        print(f"{inp}: {len(sets) - n0} images", file=sys.stderr)
    info = (f"k-majority tree, branching {a.branching}, {a.levels} levels, "
            f"{sum(map(len, sets))} ORB descriptors from {len(sets)} images of: "
            f"{', '.join(Path(i).name for i in a.inputs)}")
    vocab = train_vocabulary(sets, a.branching, a.levels, seed=a.seed, info=info)
    vocab.save(a.out)
    print(f"wrote {a.out}: {info}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
