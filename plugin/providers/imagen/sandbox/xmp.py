"""The edit's output for a JPEG: the same JPEG with the develop settings embedded as XMP [DOC].

The pixels are untouched — "if you open the photos with the default photo viewer … you won't
see the edits" — which is why a client must export to get a viewable result. The settings are
written in Camera Raw's `crs:` names where one exists, the rest under a sandbox namespace.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import quoteattr

from .develop import Settings

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"  # the APP1 identifier of an XMP packet
SANDBOX_NS = "https://retouch.invalid/ns/imagen-sandbox/1.0/"


def packet(settings: Settings, profile_key: int) -> bytes:
    """An XMP packet describing `settings`."""
    temperature_shift = round((settings.wb_gains[0] - settings.wb_gains[2]) * 2000)  # a readable proxy
    crs = {
        "crs:Version": "15.0",
        "crs:ProcessVersion": "11.0",
        "crs:WhiteBalance": "Custom",
        "crs:IncrementalTemperature": f"{temperature_shift:+d}",
        "crs:Exposure2012": f"{settings.exposure_ev:+.2f}",
        "crs:Saturation": f"{round((settings.saturation - 1) * 100):+d}",
        "crs:Sharpness": str(round(settings.sharpen_percent / 2)),
        "crs:HasCrop": "True" if settings.crop else "False",
    }
    if settings.crop:
        left, top, right, bottom = settings.crop
        crs.update(
            {
                "crs:CropLeft": str(left),
                "crs:CropTop": str(top),
                "crs:CropRight": str(right),
                "crs:CropBottom": str(bottom),
                "crs:CropAngle": "0",
            }
        )
    sandbox = {
        "sandbox:ProfileKey": str(profile_key),
        "sandbox:WhiteBalanceGains": ",".join(f"{gain:.4f}" for gain in settings.wb_gains),
        "sandbox:RecordedOptions": json.dumps(settings.recorded, sort_keys=True),
    }
    attributes = "\n    ".join(f"{name}={quoteattr(value)}" for name, value in {**crs, **sandbox}.items())
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"\n'
        f'    xmlns:sandbox="{SANDBOX_NS}"\n'
        f"    {attributes}/>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def embed(jpeg: bytes, xmp: bytes) -> bytes:
    """`jpeg` with an APP1 XMP segment after SOI (and after a JFIF APP0 when there is one)."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    payload = XMP_HEADER + xmp
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("XMP packet too large for one APP1 segment")
    position = 2
    if jpeg[2:4] == b"\xff\xe0":  # JFIF must stay first
        position = 4 + int.from_bytes(jpeg[4:6], "big")
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:position] + segment + jpeg[position:]


def extract(jpeg: bytes) -> bytes | None:
    """The XMP packet embedded in `jpeg`, if any (a test and debugging aid)."""
    start = jpeg.find(b"\xff\xe1")  # a plain scan: enough for the files this sandbox writes
    while start != -1:
        length = int.from_bytes(jpeg[start + 2 : start + 4], "big")
        body = jpeg[start + 4 : start + 2 + length]
        if body.startswith(XMP_HEADER):
            return body[len(XMP_HEADER) :]
        start = jpeg.find(b"\xff\xe1", start + 2)
    return None
