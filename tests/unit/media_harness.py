"""Shared by the media emulator's unit tests: the API pages' sample requests, verbatim, and an
emulator-like object (`FakeEmu`) with what job types use of CiEmulator."""

from __future__ import annotations

import threading
from typing import Any, Callable

from defusedxml import ElementTree

from devstack.emulator import media_jobs as mj
from devstack.emulator.server import Job
from devstack.emulator.xmlutil import element_to_dict

REGION = "ap-guangzhou"
IN_BUCKET = "media-1250000000"
OUT_BUCKET = "results-1250000000"

# ----------------------------------------------------------------------------- the pages' samples
# 002 (VideoEnhance), "Request 1: Use Image Quality Enhancement Template ID", verbatim.
PAGE_VE_TEMPLATE = """<Request>
<Tag>VideoEnhance</Tag>
<Input>
<Object>test.${ext}</Object>
</Input>
<Operation>
<TemplateId>t1460606b9752148c4ab182f55163ba7cd</TemplateId>
<TranscodeTemplateId>t160606b9752148c4absdfaf2f55163b1f</TranscodeTemplateId>
<WatermarkTemplateId>t146d70eb241c44c63b6efc1cc93ccfc5d</WatermarkTemplateId>
<WatermarkTemplateId>t12a74d11687d444deba8a6cc52051ac27</WatermarkTemplateId>
<DigitalWatermark>
<Type>Text</Type>
<Message>123456789ab</Message>
<Version>V1</Version>
<IgnoreError>false</IgnoreError>
</DigitalWatermark>
<Output>
<Region>ap-chongqing</Region>
<Bucket>test-123456789</Bucket>
<Object>output/out.${ext}</Object>
</Output>
<UserData>This is my data.</UserData>
<JobLevel>0</JobLevel>
</Operation>
<CallBack>http://callback.demo.com</CallBack>
<CallBackFormat>JSON</CallBackFormat>
</Request>"""

# 002, "Request 2: Use Image Quality Enhancement Processing Parameters", verbatim.
PAGE_VE_INLINE = """<Request>
<Tag>VideoEnhance</Tag>
<Input>
<Object>test.${ext}</Object>
</Input>
<Operation>
<VideoEnhance>
<Transcode>
<Container>
<Format>mp4</Format>
</Container>
<Video>
<Codec>H.264</Codec>
<Bitrate>1000</Bitrate>
<Width>1280</Width>
<Fps>30</Fps>
</Video>
<Audio>
<Codec>aac</Codec>
<Samplerate>44100</Samplerate>
<Bitrate>128</Bitrate>
<Channels>4</Channels>
</Audio>
</Transcode>
<SuperResolution>
<Resolution>sdtohd</Resolution>
<EnableScaleUp>true</EnableScaleUp>
<Version>Enhance</Version>
</SuperResolution>
<ColorEnhance>
<Contrast>50</Contrast>
<Correction>100</Correction>
<Saturation>100</Saturation>
</ColorEnhance>
<MsSharpen>
<SharpenLevel>5</SharpenLevel>
</MsSharpen>
<SDRtoHDR>
<HdrMode>HDR10</HdrMode>
</SDRtoHDR>
</VideoEnhance>
<Watermark>
<Type>Text</Type>
<LocMode>Absolute</LocMode>
<Dx>128</Dx>
<Dy>128</Dy>
<Pos>TopRight</Pos>
<StartTime>0</StartTime>
<EndTime>100.5</EndTime>
<Text>
<Text>Watermark content</Text>
<FontSize>30</FontSize>
<FontType>simfang.ttf</FontType>
<FontColor>0xRRGGBB</FontColor>
<Transparency>30</Transparency>
</Text>
</Watermark>
<DigitalWatermark>
<Type>Text</Type>
<Message>123456789ab</Message>
<Version>V1</Version>
<IgnoreError>false</IgnoreError>
</DigitalWatermark>
<Output>
<Region>ap-chongqing</Region>
<Bucket>test-123456789</Bucket>
<Object>output/out.${ext}</Object>
</Output>
<UserData>This is my data.</UserData>
<JobLevel>0</JobLevel>
</Operation>
<CallBack>http://callback.demo.com</CallBack>
<CallBackFormat>JSON</CallBackFormat>
</Request>"""

# 003 (DigitalWatermark), the request body of "Request", verbatim.
PAGE_DW_BODY = """<Request>
<Tag>DigitalWatermark</Tag>
<Input>
<Object>input/demo.mp4</Object>
</Input>
<Operation>
<DigitalWatermark>
<Type>Text</Type>
<Message>123456789ab</Message>
<Version>V1</Version>
</DigitalWatermark>
<Output>
<Region>ap-chongqing</Region>
<Bucket>test-123456789</Bucket>
<Object>output/out.mp4</Object>
</Output>
<UserData>This is my data.</UserData>
<JobLevel>0</JobLevel>
</Operation>
<CallBack>http://callback.demo.com</CallBack>
<CallBackFormat>JSON</CallBackFormat>
</Request>"""

# 003, "Examples" request (adds IgnoreError).
PAGE_DW_EXAMPLE = PAGE_DW_BODY.replace("<Version>V1</Version>\n</DigitalWatermark>",
                                       "<Version>V1</Version>\n<IgnoreError>false</IgnoreError>\n</DigitalWatermark>")


def parse(xml: str) -> dict[str, Any]:
    """As the emulator's HTTP layer does: defused XML → dict."""
    return element_to_dict(ElementTree.fromstring(xml.encode(), forbid_dtd=True))


# ----------------------------------------------------------------------------- emulator-like harness
class FakeEmu:
    """What processors and validators use of CiEmulator: config, s3(), input_url(), the registries and hooks."""

    def __init__(self, s3: Any):
        self._s3 = s3
        self._lock = threading.RLock()
        self.config: dict[str, Any] = {}
        self.processors: dict[str, Callable[..., Any]] = {}
        self.validators: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.on_create: dict[str, Callable[..., None]] = {}
        mj.register(self)

    def s3(self) -> Any:
        return self._s3

    def input_url(self, job: Job) -> str:
        return f"http://{job.bucket}.cos.{job.region}.myqcloud.com/{job.detail['Input']['Object']}"


_counter = iter(range(10**6))


def make_job(tag: str, obj: str, op: dict[str, Any]) -> Job:
    doc = {"Tag": tag, "Input": {"Object": obj}, "Operation": op}
    job_id = f"c{next(_counter):031x}"
    detail = {"Code": "Success", "Message": "", "JobId": job_id, "State": "Running", "Tag": tag,
              "Input": {"BucketId": IN_BUCKET, "Object": obj, "Region": REGION},
              "Operation": dict(op)}
    return Job(job_id, IN_BUCKET, REGION, tag, doc, detail)
