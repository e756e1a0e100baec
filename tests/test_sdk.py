"""The in-car SDK: README example on real speech, callbacks, async iteration, thread safety."""

from __future__ import annotations

import asyncio
import re
import threading

import numpy as np
import pytest
import soundfile as sf

from connectors.sdk import EmotionSDK
from emotune.config import PROJECT_ROOT
from emotune.errors import EmotuneError, FrameError, RasaUnavailableError

SAMPLE = PROJECT_ROOT / "samples" / "demo_call.flac"


def _frames(rate: int = 16000) -> list[bytes]:
    audio, file_rate = sf.read(SAMPLE, dtype="int16")
    assert file_rate == rate
    n = rate // 50
    return [audio[i : i + n].tobytes() for i in range(0, len(audio) - n + 1, n)]


@pytest.fixture(scope="module")
def sdk() -> EmotionSDK:
    return EmotionSDK.open()


def test_readme_sdk_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## In-car SDK", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.chdir(PROJECT_ROOT)
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert len(namespace["seen"]) >= 10  # type: ignore[arg-type]


def test_callback_and_return_values_agree_on_real_speech(sdk: EmotionSDK) -> None:
    via_callback = []
    with sdk.session() as session:
        session.on_event(via_callback.append)
        returned = [e for f in _frames() for e in session.feed(f)]
        assert session.latest == returned[-1]
    assert returned == via_callback
    labels = [e.label for e in returned]
    # The sample call goes from neutral to strongly angry: the model must notice the anger.
    assert "angry" in labels[len(labels) // 2 :]


def test_async_iterator_yields_events_fed_from_another_thread(sdk: EmotionSDK) -> None:
    async def consume() -> list[str]:
        session = sdk.session()
        got: list[str] = []

        def produce() -> None:
            for frame in _frames():
                session.feed(frame)
            session.close()

        feeder = threading.Thread(target=produce)
        iterator = session.events()
        first = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0)  # the iterator registers before audio flows
        feeder.start()
        got.append((await first).label)
        async for event in iterator:
            got.append(event.label)
        feeder.join()
        return got

    labels = asyncio.run(consume())
    assert len(labels) >= 10


def test_sessions_are_independent_and_thread_safe(sdk: EmotionSDK) -> None:
    frames = _frames()
    results: dict[int, list] = {}

    def run(index: int) -> None:
        with sdk.session(session_id=f"seat-{index}") as session:
            results[index] = [e.to_dict() for f in frames for e in session.feed(f)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] and all(results[i] == results[0] for i in range(4))


def test_one_session_fed_from_two_threads_loses_nothing(sdk: EmotionSDK) -> None:
    silence = b"\x00\x00" * 320
    session = sdk.session()
    barrier = threading.Barrier(2)

    def feed() -> None:
        barrier.wait()
        for _ in range(500):
            session.feed(silence)

    threads = [threading.Thread(target=feed) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert session._stream._input_samples == 1000 * 320


def test_int8_variant_and_bad_frames(sdk: EmotionSDK) -> None:
    small = EmotionSDK.open(variant="int8")
    assert small.model.path.name == "emotion.int8.onnx"
    with small.session() as session, pytest.raises(FrameError, match="640 bytes"):
        session.feed(b"\x00" * 100)
    closed = sdk.session()
    closed.close()
    with pytest.raises(EmotuneError, match="closed"):
        closed.feed(b"\x00" * 640)


def test_say_without_rasa_is_a_clear_error(sdk: EmotionSDK) -> None:
    offline = EmotionSDK.open(rasa_url="http://127.0.0.1:9")
    with offline.session() as session, pytest.raises(RasaUnavailableError, match="127.0.0.1:9"):
        session.say("hello", timeout_s=1.0)


def test_labels_in_config_limit_what_is_shown() -> None:
    from emotune.config import load_config

    cfg = load_config(PROJECT_ROOT / "config.yml", model={"labels": ["neutral", "angry"]},
                      tone_policy={"rules": [{"emotion": "angry", "tone": "calm"}]})
    sdk = EmotionSDK.open(cfg)
    with sdk.session() as session:
        events = [e for f in _frames() for e in session.feed(f)]
    assert events and all(set(e.probabilities) == {"neutral", "angry"} for e in events)
    assert np.isclose(sum(events[-1].probabilities.values()), 1.0, atol=1e-3)
