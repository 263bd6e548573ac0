"""COS trigger events name regions by short code; the APIs want the full name."""

from __future__ import annotations

SHORT_TO_FULL = {
    "bj": "ap-beijing",
    "sh": "ap-shanghai",
    "gz": "ap-guangzhou",
    "cd": "ap-chengdu",
    "cq": "ap-chongqing",
    "nj": "ap-nanjing",
    "hk": "ap-hongkong",
    "sgp": "ap-singapore",
    "tpe": "ap-taipei",
    "jkt": "ap-jakarta",
    "bkk": "ap-bangkok",
    "tyo": "ap-tokyo",
    "seo": "ap-seoul",
    "sao": "sa-saopaulo",
    "fra": "eu-frankfurt",
    "sv": "na-siliconvalley",
    "ca": "na-ashburn",
    "szfsi": "ap-shenzhen-fsi",
    "shfsi": "ap-shanghai-fsi",
    "bjfsi": "ap-beijing-fsi",
    "tj": "ap-beijing-1",
    "bja": "ap-beijing-1",
}


def full_region(value: str) -> str:
    """Return the full region name for a short code, or the value itself when it is already full."""
    value = (value or "").strip()
    if not value:
        return value
    return SHORT_TO_FULL.get(value.lower(), value)
