"""Cost of one signed link token: the compact HMAC-SHA256 tokens of ``digest.signing`` against the
itsdangerous ``URLSafeTimedSerializer`` the product used before (issue 12: 22 signatures per mail were
12.5% of the send path). Both make the same links of one digest (2 + 2 per paper: unsubscribe,
preferences, a vote up and down per paper) and verify them; the two are alternated, repeated, and the
median of each and their ratio printed. Nothing is asserted.

    .venv/bin/python bench/sign_speed.py [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from itsdangerous import URLSafeTimedSerializer

from digest.signing import LinkSigner

SECRET = "bench-secret-0123456789abcdef"
KEY = "Zk3Vq9mJ2xH7cL0pR8sT4w"  # a link key as stored (22 characters, 128 bits)
PAPERS = [f"2408.{i:05d}" for i in range(10)]
TOKENS_PER_MAIL = 2 + 2 * len(PAPERS)
ROUNDS = 400  # mails per timing


def product() -> tuple[Callable[[], list[str]], Callable[[list[str]], None]]:
    s = LinkSigner(SECRET)

    def sign() -> list[str]:
        out = [s.token("unsubscribe", 123456, key=KEY), s.token("preferences", 123456, key=KEY)]
        for p in PAPERS:
            out.append(s.token("feedback", 123456, key=KEY, p=p, v="up"))
            out.append(s.token("feedback", 123456, key=KEY, p=p, v="down"))
        return out

    def verify(tokens: list[str]) -> None:
        s.verify("unsubscribe", tokens[0])
        s.verify("preferences", tokens[1])
        for t in tokens[2:]:
            s.verify("feedback", t)

    return sign, verify


def baseline() -> tuple[Callable[[], list[str]], Callable[[list[str]], None]]:
    """What digest/signing.py did before: one serializer, salted by purpose."""
    ser = URLSafeTimedSerializer(SECRET, salt="papers-digest")

    def sign() -> list[str]:
        out = [ser.dumps({"s": 123456}, salt="unsubscribe"), ser.dumps({"s": 123456}, salt="preferences")]
        for p in PAPERS:
            out.append(ser.dumps({"s": 123456, "p": p, "v": "up"}, salt="feedback"))
            out.append(ser.dumps({"s": 123456, "p": p, "v": "down"}, salt="feedback"))
        return out

    def verify(tokens: list[str]) -> None:
        ser.loads(tokens[0], salt="unsubscribe")
        ser.loads(tokens[1], salt="preferences")
        for t in tokens[2:]:
            ser.loads(t, salt="feedback")

    return sign, verify


def per_token_us(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    for _ in range(ROUNDS):
        fn()
    return (time.perf_counter() - t) / (ROUNDS * TOKENS_PER_MAIL) * 1e6


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    sides = {"product (HMAC-SHA256)": product(), "baseline (itsdangerous)": baseline()}
    samples: dict[str, dict[str, list[float]]] = {n: {"sign": [], "verify": []} for n in sides}
    lengths = {n: sum(map(len, sign())) / TOKENS_PER_MAIL for n, (sign, _) in sides.items()}
    for _ in range(repeats):  # alternated: each repeat times both, in turn
        for name, (sign, verify) in sides.items():
            tokens = sign()
            samples[name]["sign"].append(per_token_us(sign))
            samples[name]["verify"].append(per_token_us(lambda: verify(tokens)))
    print(f"{TOKENS_PER_MAIL} tokens per 10-paper digest, {ROUNDS} digests per timing, {repeats} repeats alternated")
    print(f"{'':26} {'sign us/token':>14} {'verify us/token':>16} {'chars/token':>12}")
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in samples.items()}
    for name in sides:
        print(f"{name:26} {med[name]['sign']:14.2f} {med[name]['verify']:16.2f} {lengths[name]:12.1f}")
    p, b = med["product (HMAC-SHA256)"], med["baseline (itsdangerous)"]
    ratios = {k: statistics.median(bs / ps for bs, ps in zip(samples["baseline (itsdangerous)"][k],
                                                              samples["product (HMAC-SHA256)"][k]))
              for k in ("sign", "verify")}
    print(f"baseline / product, median of the paired repeats: sign {ratios['sign']:.1f}x, verify {ratios['verify']:.1f}x")
    print(f"per mail ({TOKENS_PER_MAIL} links): product {p['sign'] * TOKENS_PER_MAIL:.0f} us, "
          f"baseline {b['sign'] * TOKENS_PER_MAIL:.0f} us")


if __name__ == "__main__":
    main()
