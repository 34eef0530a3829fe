#!/usr/bin/env python3
"""A real LiveKit WebRTC client driven by JSON lines, for callgate's end-to-end tests.

One JSON command per line on stdin, exactly one JSON reply per command on
stdout. Room events are buffered in the process (with a sequence number) and
read through the `events` and `wait_for` commands, so stdout carries nothing
but replies. Logs go to stderr. See README.md next to this file.
"""

from __future__ import annotations

import array
import asyncio
import inspect
import json
import logging
import math
import os
import sys
import time
from typing import Any, Awaitable, Callable

from livekit import rtc

log = logging.getLogger("lkclient")

PUBLISH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 15.0
DISCONNECT_TIMEOUT_S = 10.0
MAX_EVENTS = 10_000

AUDIO_RATE = 48_000
AUDIO_FRAME_MS = 10
VIDEO_WIDTH = 320
VIDEO_HEIGHT = 240
VIDEO_FPS = 15

SOURCE_NAMES = {
    rtc.TrackSource.SOURCE_UNKNOWN: "unknown",
    rtc.TrackSource.SOURCE_CAMERA: "camera",
    rtc.TrackSource.SOURCE_MICROPHONE: "microphone",
    rtc.TrackSource.SOURCE_SCREENSHARE: "screen_share",
    rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO: "screen_share_audio",
}
KIND_NAMES = {
    rtc.TrackKind.KIND_UNKNOWN: "unknown",
    rtc.TrackKind.KIND_AUDIO: "audio",
    rtc.TrackKind.KIND_VIDEO: "video",
}
CONNECTION_STATES = {
    rtc.ConnectionState.CONN_DISCONNECTED: "disconnected",
    rtc.ConnectionState.CONN_CONNECTED: "connected",
    rtc.ConnectionState.CONN_RECONNECTING: "reconnecting",
}


class CommandError(Exception):
    """A command failed in an expected way; its message goes back as `error`."""


def source_name(source: int) -> str:
    return SOURCE_NAMES.get(source, f"source_{source}")


def disconnect_reason_name(reason: int | None) -> str:
    if reason is None:
        return "unknown_reason"
    try:
        return rtc.DisconnectReason.Name(reason).lower()
    except ValueError:
        return f"reason_{reason}"


def permissions_json(perm: Any) -> dict[str, Any]:
    return {
        "can_publish": perm.can_publish,
        "can_subscribe": perm.can_subscribe,
        "can_publish_data": perm.can_publish_data,
        "can_publish_sources": [source_name(s) for s in perm.can_publish_sources],
        "can_update_metadata": perm.can_update_metadata,
        "hidden": perm.hidden,
    }


def publication_json(pub: Any) -> dict[str, Any]:
    out = {
        "sid": pub.sid,
        "name": pub.name,
        "kind": KIND_NAMES.get(pub.kind, str(pub.kind)),
        "source": source_name(pub.source),
        "muted": pub.muted,
    }
    if isinstance(pub, rtc.RemoteTrackPublication):
        out["subscribed"] = pub.subscribed
    return out


def matches(value: Any, pattern: Any) -> bool:
    """An object pattern matches when every key it names matches (recursively), a
    list the same items in any order, anything else an equal value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches(value[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and sorted(map(json.dumps, value)) == sorted(
            map(json.dumps, pattern)
        )
    return value == pattern


class Media:
    """Generated media feeding one published local track."""

    def __init__(self, source: Any, task: asyncio.Task) -> None:
        self.source = source
        self.task = task

    async def close(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass
        try:
            await self.source.aclose()
        except Exception:
            log.debug("closing media source failed", exc_info=True)


class Client:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.room: rtc.Room | None = None
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        # resolved (and replaced) whenever an event is recorded
        self.changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # background tasks, referenced so they are not garbage-collected mid-run
        self.tasks: set[asyncio.Task] = set()
        self.media: dict[str, Media] = {}
        # subscribe only to tracks whose kind matches their source (cmd_connect)
        self.by_kind = False
        # follow the room's metadata: what to receive, and who may receive ours (cmd_connect)
        self.honest = False
        # remote track sid -> frames received on it, and whose track it is
        self.frames: dict[str, int] = {}
        # remote track sids read as video (whatever their source says)
        self.video_sids: set[str] = set()
        self.track_owner: dict[str, tuple[str, str]] = {}
        # remote track sid -> task counting its frames, while subscribed
        self.streams: dict[str, asyncio.Task] = {}

    # --- events ---------------------------------------------------------

    def record(self, kind: str, /, **data: Any) -> None:
        self.seq += 1
        event = {"seq": self.seq, "event": kind, "mono": time.monotonic(), "wall": time.time()}
        event.update(data)
        self.events.append(event)
        if len(self.events) > MAX_EVENTS:
            del self.events[: len(self.events) - MAX_EVENTS]
        log.info("event %s", json.dumps(event))
        self.changed.set_result(None)
        self.changed = asyncio.get_running_loop().create_future()

    def spawn(self, coro: Awaitable[None]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def find(self, name: str, where: dict[str, Any], since: int) -> dict[str, Any] | None:
        for event in self.events:
            if event["seq"] > since and event["event"] == name and matches(event, where):
                return event
        return None

    def attach_handlers(self, room: rtc.Room) -> None:
        @room.on("participant_connected")
        def _pc(p: rtc.RemoteParticipant) -> None:
            self.record("participant_connected", identity=p.identity, name=p.name)
            if self.honest:
                for pub in p.track_publications.values():
                    self.judge(pub, p)

        @room.on("participant_disconnected")
        def _pd(p: rtc.RemoteParticipant) -> None:
            self.record(
                "participant_disconnected",
                identity=p.identity,
                reason=disconnect_reason_name(p.disconnect_reason),
            )

        @room.on("local_track_published")
        def _ltp(pub: Any, track: Any) -> None:
            self.record("local_track_published", **publication_json(pub))

        @room.on("local_track_unpublished")
        def _ltu(pub: Any) -> None:
            self.record("local_track_unpublished", **publication_json(pub))
            media = self.media.pop(pub.sid, None)
            if media is not None:
                self.spawn(media.close())

        @room.on("track_published")
        def _tp(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            self.record("track_published", identity=p.identity, **publication_json(pub))
            if self.honest:
                self.judge(pub, p)
            elif self.by_kind:
                self.subscribe_by_kind(pub)

        @room.on("track_unpublished")
        def _tu(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            self.record("track_unpublished", identity=p.identity, **publication_json(pub))

        @room.on("track_subscribed")
        def _ts(track: Any, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            self.record("track_subscribed", identity=p.identity, **publication_json(pub))
            if self.honest and not self.may_play(track, pub, p):
                pub.set_subscribed(False)
                self.record("track_refused", sid=pub.sid, kind=KIND_NAMES.get(pub.kind), source=source_name(pub.source))
                return
            self.count_frames(track, pub, p)

        @room.on("track_unsubscribed")
        def _tus(track: Any, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            self.record("track_unsubscribed", identity=p.identity, **publication_json(pub))
            task = self.streams.pop(pub.sid, None)
            if task is not None:
                task.cancel()

        @room.on("track_subscription_failed")
        def _tsf(p: rtc.RemoteParticipant, sid: str, error: str) -> None:
            self.record("track_subscription_failed", identity=p.identity, sid=sid, error=error)

        @room.on("track_muted")
        def _tm(p: rtc.Participant, pub: Any) -> None:
            self.record("track_muted", identity=p.identity, **publication_json(pub))

        @room.on("track_unmuted")
        def _tum(p: rtc.Participant, pub: Any) -> None:
            self.record("track_unmuted", identity=p.identity, **publication_json(pub))

        @room.on("participant_permissions_changed")
        def _ppc(p: rtc.Participant, perm: Any) -> None:
            self.record(
                "participant_permissions_changed",
                identity=p.identity,
                local=isinstance(p, rtc.LocalParticipant),
                permissions=permissions_json(perm),
            )

        @room.on("participant_metadata_changed")
        def _pmc(p: rtc.Participant, old: str, new: str) -> None:
            self.record("participant_metadata_changed", identity=p.identity, metadata=new)

        @room.on("participant_attributes_changed")
        def _pac(changed: dict[str, str], p: rtc.Participant) -> None:
            self.record(
                "participant_attributes_changed",
                identity=p.identity,
                changed=changed,
                attributes=dict(p.attributes),
            )

        @room.on("room_metadata_changed")
        def _rmc(old: str, new: str) -> None:
            self.record("room_metadata_changed", metadata=new)
            if self.honest:
                self.follow()

        @room.on("data_received")
        def _dr(packet: rtc.DataPacket) -> None:
            self.record(
                "data_received",
                identity=packet.participant.identity if packet.participant else None,
                topic=packet.topic,
                payload=packet.data.decode("utf-8", errors="replace"),
            )

        @room.on("connection_state_changed")
        def _csc(state: int) -> None:
            self.record("connection_state_changed", state=CONNECTION_STATES.get(state, str(state)))

        @room.on("reconnecting")
        def _rc() -> None:
            self.record("reconnecting")

        @room.on("reconnected")
        def _rcd() -> None:
            self.record("reconnected")

        @room.on("disconnected")
        def _d(reason: int) -> None:
            self.record("disconnected", reason=disconnect_reason_name(reason))

    def subscribe_by_kind(self, pub: rtc.RemoteTrackPublication) -> None:
        kind, source = KIND_NAMES.get(pub.kind, "unknown"), source_name(pub.source)
        honest = (kind == "audio" and source in ("microphone", "screen_share_audio")) or (
            kind == "video" and source in ("camera", "screen_share")
        )
        if honest:
            pub.set_subscribed(True)
        else:
            self.record("track_refused", sid=pub.sid, kind=kind, source=source)

    # --- the honest client: callgate's README rule --------------------------
    #
    # What plays and who may receive follow the room's metadata, which only
    # callgate can write; the same rule as clients/ts/src/media.ts.

    def room_state(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.require_room().metadata or "null")
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            return {"video": "off", "live": []}
        video = meta.get("video") if meta.get("video") in ("on", "requested") else "off"
        live = [x for x in meta.get("live") or [] if isinstance(x, str)]
        return {"video": video, "live": live}

    def follow(self) -> None:
        """Only those live may subscribe to our tracks (LiveKit enforces it),
        and every publication is judged again."""
        room = self.require_room()
        state = self.room_state()
        me = room.local_participant.identity
        allowed = [
            rtc.ParticipantTrackPermission(participant_identity=who, allow_all=True)
            for who in state["live"]
            if who != me
        ]
        room.local_participant.set_track_subscription_permissions(
            allow_all_participants=False, participant_permissions=allowed
        )
        self.record("permissions_set", allowed=[a.participant_identity for a in allowed])
        for p in room.remote_participants.values():
            for pub in p.track_publications.values():
                self.judge(pub, p)

    @staticmethod
    def real_kind(pub: Any) -> str | None:
        declared = KIND_NAMES.get(pub.kind, "unknown")
        top = (pub.mime_type or "").split("/")[0].strip().lower()
        media = {"": None, "audio": "audio", "video": "video"}.get(top, "other")
        if media is not None and media != declared:
            return None
        return declared

    def may_receive(self, pub: Any, p: rtc.RemoteParticipant) -> bool:
        state = self.room_state()
        if p.identity not in state["live"]:
            return False
        kind, source = self.real_kind(pub), source_name(pub.source)
        if kind == "audio":
            return source == "microphone" or (source == "screen_share_audio" and state["video"] == "on")
        if kind == "video":
            return source in ("camera", "screen_share") and state["video"] == "on"
        return False

    def may_play(self, track: Any, pub: Any, p: rtc.RemoteParticipant) -> bool:
        real = "video" if isinstance(track, rtc.RemoteVideoTrack) else "audio"
        return self.may_receive(pub, p) and real == self.real_kind(pub)

    def judge(self, pub: Any, p: rtc.RemoteParticipant) -> None:
        wanted = self.may_receive(pub, p)
        if pub.subscribed != wanted:
            pub.set_subscribed(wanted)
            if not wanted:
                task = self.streams.pop(pub.sid, None)
                if task is not None:
                    task.cancel()
        if not wanted:
            self.record("track_refused", sid=pub.sid, kind=KIND_NAMES.get(pub.kind), source=source_name(pub.source))

    def count_frames(self, track: Any, pub: Any, p: rtc.RemoteParticipant) -> None:
        sid = pub.sid
        self.track_owner[sid] = (p.identity, source_name(pub.source))
        self.frames.setdefault(sid, 0)
        if isinstance(track, rtc.RemoteVideoTrack):
            self.video_sids.add(sid)
            stream: Any = rtc.VideoStream(track)
        elif isinstance(track, rtc.RemoteAudioTrack):
            stream = rtc.AudioStream(track)
        else:
            return

        async def run() -> None:
            try:
                async for _ in stream:
                    self.frames[sid] += 1
            finally:
                await stream.aclose()

        old = self.streams.pop(sid, None)
        if old is not None:
            old.cancel()
        self.streams[sid] = self.spawn(run())

    # --- commands -------------------------------------------------------

    def require_room(self) -> rtc.Room:
        if self.room is None:
            raise CommandError("not connected")
        return self.room

    async def cmd_connect(self, url: str, token: str, subscribe: str = "all") -> dict[str, Any]:
        """`subscribe`: "all" (LiveKit's auto-subscribe); "by_kind": subscribe
        to a track only when its kind matches its declared source (audio as
        microphone or screen_share_audio, video as camera or screen_share);
        "honest", the rule callgate's README gives clients: by kind, by media
        (the codec's mime type must be the declared kind), video only while
        the room's metadata says video is on, only from those it lists live,
        and only those it lists live may subscribe to this client's tracks."""
        if self.room is not None:
            raise CommandError("already connected")
        if subscribe not in ("all", "by_kind", "honest"):
            raise CommandError(f"unknown subscribe mode {subscribe!r}")
        room = rtc.Room()
        self.by_kind = subscribe == "by_kind"
        self.honest = subscribe == "honest"
        self.attach_handlers(room)
        try:
            await asyncio.wait_for(
                room.connect(url, token, rtc.RoomOptions(auto_subscribe=subscribe == "all")),
                CONNECT_TIMEOUT_S,
            )
        except asyncio.TimeoutError:
            raise CommandError(f"connect timed out after {CONNECT_TIMEOUT_S}s") from None
        except rtc.ConnectError as e:
            raise CommandError(f"ConnectError: {e.message}") from None
        self.room = room
        self.record("connected", identity=room.local_participant.identity, room=room.name)
        if self.honest:
            # Before anything is published: who may receive it.
            self.follow()
        elif self.by_kind:
            for p in room.remote_participants.values():
                for pub in p.track_publications.values():
                    self.subscribe_by_kind(pub)
        me = room.local_participant
        return {
            "identity": me.identity,
            "sid": me.sid,
            "name": me.name,
            "room": room.name,
            "permissions": permissions_json(me.permissions),
        }

    async def publish(
        self,
        track: Any,
        source: Any,
        feed: Callable[[], Awaitable[None]],
        options: rtc.TrackPublishOptions,
        timeout: float,
    ) -> dict[str, Any]:
        room = self.require_room()
        task = self.spawn(feed())
        media = Media(source, task)
        try:
            pub = await asyncio.wait_for(
                room.local_participant.publish_track(track, options), timeout
            )
        except asyncio.TimeoutError:
            await media.close()
            # LiveKit refuses a source outside canPublishSources with a
            # RequestResponse(NOT_ALLOWED) that this SDK ignores: silence is the refusal.
            raise CommandError(
                f"publish timed out after {timeout}s: LiveKit never confirmed the track"
            ) from None
        except rtc.participant.PublishTrackError as e:
            await media.close()
            raise CommandError(f"PublishTrackError: {e.message}") from None
        self.media[pub.sid] = media
        return {"sid": pub.sid, "source": source_name(pub.source)}

    async def cmd_publish_audio(self, timeout: float = PUBLISH_TIMEOUT_S) -> dict[str, Any]:
        source = rtc.AudioSource(AUDIO_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        return await self.publish(track, source, lambda: feed_audio(source), options, timeout)

    # `colour` ([r, g, b], 0-255) makes every frame of a published video that
    # one solid colour, for tests that look for it in a recording; without it
    # the frames cycle through shades.

    async def cmd_publish_camera(
        self, timeout: float = PUBLISH_TIMEOUT_S, colour: list[int] | None = None
    ) -> dict[str, Any]:
        return await self.publish_video(
            "camera", rtc.TrackSource.SOURCE_CAMERA, False, timeout, colour
        )

    async def cmd_publish_screen_share(
        self, timeout: float = PUBLISH_TIMEOUT_S, colour: list[int] | None = None
    ) -> dict[str, Any]:
        return await self.publish_video(
            "screen_share", rtc.TrackSource.SOURCE_SCREENSHARE, True, timeout, colour
        )

    async def cmd_publish_video_as(
        self, source: str, timeout: float = PUBLISH_TIMEOUT_S, colour: list[int] | None = None
    ) -> dict[str, Any]:
        """A video track declared as `source` (`microphone`, `screen_share_audio`,
        `unknown`, ...): what a modified client does to get video past a policy
        that LiveKit checks by declared source only."""
        by_name = {name: kind for kind, name in SOURCE_NAMES.items()}
        if source not in by_name:
            raise CommandError(f"unknown source {source!r}")
        return await self.publish_video(
            f"video-as-{source}", by_name[source], False, timeout, colour
        )

    async def publish_video(
        self,
        name: str,
        source_kind: int,
        screencast: bool,
        timeout: float,
        colour: list[int] | None = None,
    ) -> dict[str, Any]:
        if colour is not None and (
            len(colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
        ):
            raise CommandError(f"a colour is [r, g, b], each 0-255: {colour!r}")
        source = rtc.VideoSource(VIDEO_WIDTH, VIDEO_HEIGHT, is_screencast=screencast)
        track = rtc.LocalVideoTrack.create_video_track(name, source)
        options = rtc.TrackPublishOptions(source=source_kind, simulcast=False)
        return await self.publish(
            track, source, lambda: feed_video(source, colour), options, timeout
        )

    async def cmd_unpublish(self, sid: str) -> dict[str, Any]:
        room = self.require_room()
        try:
            await asyncio.wait_for(room.local_participant.unpublish_track(sid), PUBLISH_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise CommandError(f"unpublish timed out after {PUBLISH_TIMEOUT_S}s") from None
        except rtc.participant.UnpublishTrackError as e:
            raise CommandError(f"UnpublishTrackError: {e.message}") from None
        media = self.media.pop(sid, None)
        if media is not None:
            await media.close()
        return {"sid": sid}

    async def cmd_set_muted(self, sid: str, muted: bool) -> dict[str, Any]:
        room = self.require_room()
        pub = room.local_participant.track_publications.get(sid)
        if pub is None or pub.track is None:
            raise CommandError(f"no local track {sid}")
        if muted:
            pub.track.mute()
        else:
            pub.track.unmute()
        return {"sid": sid, "muted": muted}

    async def cmd_publish_data(self, payload: str, topic: str = "") -> dict[str, Any]:
        room = self.require_room()
        try:
            await asyncio.wait_for(
                room.local_participant.publish_data(payload, reliable=True, topic=topic),
                PUBLISH_TIMEOUT_S,
            )
        except asyncio.TimeoutError:
            raise CommandError(f"publish_data timed out after {PUBLISH_TIMEOUT_S}s") from None
        except rtc.participant.PublishDataError as e:
            raise CommandError(f"PublishDataError: {e.message}") from None
        return {}

    async def cmd_state(self) -> dict[str, Any]:
        room = self.room
        if room is None:
            return {"connection_state": "disconnected", "last_seq": self.seq}
        me = room.local_participant
        return {
            "connection_state": CONNECTION_STATES.get(
                room.connection_state, str(room.connection_state)
            ),
            "room": room.name,
            "room_metadata": room.metadata,
            "identity": me.identity,
            "sid": me.sid,
            "permissions": permissions_json(me.permissions),
            "tracks": [publication_json(p) for p in me.track_publications.values()],
            "remote_participants": [
                {
                    "identity": rp.identity,
                    "name": rp.name,
                    "metadata": rp.metadata,
                    "permissions": permissions_json(rp.permissions),
                    "tracks": [publication_json(p) for p in rp.track_publications.values()],
                }
                for rp in room.remote_participants.values()
            ],
            "last_seq": self.seq,
        }

    async def cmd_events(self, since: int = 0) -> dict[str, Any]:
        return {"events": [e for e in self.events if e["seq"] > since], "last_seq": self.seq}

    async def cmd_wait_for(
        self, event: str, where: dict[str, Any] | None = None, since: int = 0, timeout: float = 10.0
    ) -> dict[str, Any]:
        where = where or {}
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(event, where, since)
            if found is not None:
                return {"event": found, "last_seq": self.seq}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandError(
                    f"timed out after {timeout}s waiting for {event} where {json.dumps(where)}"
                )
            try:
                await asyncio.wait_for(asyncio.shield(self.changed), remaining)
            except asyncio.TimeoutError:
                pass

    async def cmd_received_frames(self, identity: str, source: str = "camera") -> dict[str, Any]:
        """Frames from the tracks of `identity` with `source` that are subscribed now, and ever."""
        sids = [sid for sid, owner in self.track_owner.items() if owner == (identity, source)]
        return {
            "identity": identity,
            "source": source,
            "frames": sum(self.frames[sid] for sid in sids if sid in self.streams),
            "total": sum(self.frames[sid] for sid in sids),
        }

    async def cmd_video_frames_from(self, identity: str) -> dict[str, Any]:
        """Video frames ever decoded from any track of `identity`, whatever source it claimed."""
        sids = [sid for sid, owner in self.track_owner.items() if owner[0] == identity and sid in self.video_sids]
        return {"identity": identity, "tracks": len(sids), "frames": sum(self.frames[sid] for sid in sids)}

    async def cmd_received_video_frames(self, identity: str) -> dict[str, Any]:
        return await self.cmd_received_frames(identity, "camera")

    async def cmd_disconnect(self) -> dict[str, Any]:
        await self.shutdown()
        return {}

    async def shutdown(self) -> None:
        for media in list(self.media.values()):
            await media.close()
        self.media.clear()
        for task in self.streams.values():
            task.cancel()
        self.streams.clear()
        room, self.room = self.room, None
        if room is not None:
            try:
                await asyncio.wait_for(room.disconnect(), DISCONNECT_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("disconnect timed out after %ss", DISCONNECT_TIMEOUT_S)

    # --- protocol -------------------------------------------------------

    def reply(self, msg: dict[str, Any]) -> None:
        self.out.write(json.dumps(msg) + "\n")
        self.out.flush()

    async def handle(self, line: str) -> bool:
        """Runs one command and replies. Returns False when the process should exit."""
        req_id = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise CommandError('a command is a JSON object with a string "cmd"')
            req_id = req.pop("id", None)
            name = req.pop("cmd")
            handler = getattr(self, f"cmd_{name}", None)
            if handler is None:
                raise CommandError(f"unknown command {name!r}")
            try:
                inspect.signature(handler).bind(**req)
            except TypeError as e:
                raise CommandError(f"bad arguments for {name}: {e}") from None
            result = await handler(**req)
            self.reply({"id": req_id, "ok": True, **result})
            return name != "disconnect"
        except CommandError as e:
            self.reply({"id": req_id, "ok": False, "error": str(e)})
        except json.JSONDecodeError as e:
            self.reply({"id": req_id, "ok": False, "error": f"bad JSON: {e}"})
        except Exception as e:
            log.exception("command failed")
            self.reply({"id": req_id, "ok": False, "error": f"{type(e).__name__}: {e}"})
        return True


async def feed_audio(source: rtc.AudioSource) -> None:
    """A 440 Hz tone, in 10 ms frames paced by the source's own queue."""
    samples = AUDIO_RATE * AUDIO_FRAME_MS // 1000
    period = AUDIO_RATE // 440
    tone = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * (i % period) / period)) for i in range(samples))
    )
    data = tone.tobytes()
    while True:
        await source.capture_frame(rtc.AudioFrame(data, AUDIO_RATE, 1, samples))


async def feed_video(source: rtc.VideoSource, colour: list[int] | None = None) -> None:
    """Solid frames whose colour cycles (or is always `colour`), at a steady frame rate."""
    n = 0
    interval = 1.0 / VIDEO_FPS
    next_at = time.monotonic()
    pixels = VIDEO_WIDTH * VIDEO_HEIGHT
    fixed = bytes((*colour, 255)) * pixels if colour is not None else None
    while True:
        shade = (n * 8) % 256
        data = fixed if fixed is not None else bytes((shade, 255 - shade, 128, 255)) * pixels
        frame = rtc.VideoFrame(VIDEO_WIDTH, VIDEO_HEIGHT, rtc.VideoBufferType.RGBA, data)
        source.capture_frame(frame)
        n += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def main() -> None:
    # Keep the protocol stream clean: whatever else writes to fd 1 (the native
    # library included) ends up on stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    client = Client(out)
    while True:
        line = await reader.readline()
        if not line:
            log.info("stdin closed")
            await client.shutdown()
            break
        if not line.strip():
            continue
        if not await client.handle(line.decode()):
            break
    out.flush()
    # The native library's threads can outlive the room; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("LKCLIENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s lkclient[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("livekit").setLevel(os.environ.get("LKCLIENT_LIVEKIT_LOG_LEVEL", "WARNING"))
    asyncio.run(main())
