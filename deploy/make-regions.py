#!/usr/bin/env python3
"""Builds the sample region catalog data/regions.json from data/cloud-regions.csv.

One region per CSV row, one default instance per region, example.com endpoints,
a regionHost on every mqtt endpoint and the vendor SDK 4.x numeric region ids as
aliases. Python 3 standard library only. See docs/catalog.md ("The sample catalog").

    deploy/make-regions.py [--csv data/cloud-regions.csv] [--output data/regions.json]

The output is pretty-printed (2-space indent) and deterministic: running the
script again on the same CSV gives the same bytes. The script checks the rules
src/catalog.c enforces, so a bad row fails here rather than at daemon start.
"""

import argparse
import csv
import json
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROVIDERS = {
    # provider: (region id prefix, display name)
    "alibaba": ("", "Alibaba Cloud"),
    "aws": ("aws-", "AWS"),
    "azure": ("azure-", "Azure"),
}

# Limits from include/catalog.h.
REGION_ID_MAX = 32
INSTANCE_ID_MAX = 64
HOST_MAX = 100
ANSWER_MAX = 192
PRODUCT_KEY_MAX = 32
NAME_MAX = 128
# len('{"code":200,"data":{"resources":{"mqtt":{"host":"","port":}}},"message":"success"}')
ANSWER_FIXED = 82

MQTT_PORT = 1883
HTTP_PORT = 443
NOTIFY = {
    "broker": "mqtt://127.0.0.1:1883",
    "username": "bootstrapd",
    "password_env": "NOTIFY_PASSWORD",
}

# The vendor SDK 4.x names a region by number (AIOT_BOOTSTRAPOPT_REGIONID) in
# GET /auth/bootstrap/regionId/{n}: SPEC §3's table, the index is the number.
SDK_REGIONS = [
    "cn-shanghai", "ap-southeast-1", "ap-northeast-1", "us-east-1", "eu-central-1",
    "us-west-1", "cn-hangzhou", "cn-shenzhen", "cn-beijing", "cn-qingdao",
    "cn-zhangjiakou", "cn-huhehaote", "cn-heyuan", "cn-chengdu", "cn-hongkong",
    "ap-southeast-2", "ap-southeast-3", "ap-southeast-5", "ap-south-1", "eu-west-1",
    "me-east-1",
]
# SDK regions that cloud-regions.csv leaves out on purpose (closed, see
# data/README.md): their numbers stay unassigned and answer 460. Any other SDK
# region missing from the CSV is an error, so an edit cannot drop one silently.
SDK_REGIONS_ABSENT = {"ap-southeast-2", "ap-south-1"}

REGION_ID_RE = re.compile(r"^[a-z0-9-]{1,%d}$" % REGION_ID_MAX)
INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,%d}$" % INSTANCE_ID_MAX)


def fail(msg):
    sys.exit("make-regions: " + msg)


def instance_id(region_id):
    """iot-<regionid>, cut to the instance id limit (no trailing dash)."""
    iid = ("iot-" + region_id)[:INSTANCE_ID_MAX].rstrip("-.")
    if not INSTANCE_ID_RE.match(iid):
        fail("cannot make an instance id from %r" % region_id)
    return iid


def max_host_len(template, region_id, instance):
    return len(template.replace("${productKey}", "x" * PRODUCT_KEY_MAX)
               .replace("${regionId}", region_id).replace("${instanceId}", instance))


def sdk_aliases(region_ids):
    """Region id -> its SDK numbers as alias strings (Alibaba Cloud rows only:
    their ids carry no provider prefix)."""
    aliases = {}
    for number, rid in enumerate(SDK_REGIONS):
        if rid in region_ids:
            aliases.setdefault(rid, []).append(str(number))
        elif rid not in SDK_REGIONS_ABSENT:
            fail("SDK region %d %r is not in the CSV (nor in SDK_REGIONS_ABSENT)" % (number, rid))
    clash = region_ids.intersection(str(n) for n in range(len(SDK_REGIONS)))
    if clash:
        fail("region ids %s clash with SDK aliases" % sorted(clash))
    return aliases


def coordinate(row, line, field, bound):
    try:
        value = float(row[field])
    except ValueError:
        fail("line %d: %s %r is not a number" % (line, field, row[field]))
    if not math.isfinite(value) or not -bound <= value <= bound:
        fail("line %d: %s %r is not in [-%d, %d]" % (line, field, row[field], bound, bound))
    return value


def build(rows):
    regions = []
    region_ids = set()
    instance_ids = set()
    for line, row in rows:
        provider = row["provider"]
        if provider not in PROVIDERS:
            fail("line %d: unknown provider %r" % (line, provider))
        prefix, provider_name = PROVIDERS[provider]
        rid = prefix + row["region_id"]
        if not REGION_ID_RE.match(rid):
            fail("line %d: region id %r is not 1..%d of [a-z0-9-]" % (line, rid, REGION_ID_MAX))
        if rid in region_ids:
            fail("line %d: duplicate region id %r" % (line, rid))
        region_ids.add(rid)
        iid = instance_id(rid)
        if iid in instance_ids:
            fail("line %d: duplicate instance id %r" % (line, iid))
        instance_ids.add(iid)
        name = "%s (%s)" % (row["city"], provider_name)
        if len(name.encode("utf-8")) > NAME_MAX:
            fail("line %d: name %r is longer than %d bytes" % (line, name, NAME_MAX))

        mqtt_host = "${productKey}.iot-as-mqtt.%s.example.com" % rid
        # The regionId form knows no device: the same host without the product key.
        region_host = "iot-as-mqtt.%s.example.com" % rid
        http_host = "iot-as-http.%s.example.com" % rid
        for host in (mqtt_host, region_host, http_host):
            if max_host_len(host, rid, iid) > HOST_MAX:
                fail("line %d: host %r too long" % (line, host))
        for host in (mqtt_host, region_host):
            body = ANSWER_FIXED + max_host_len(host, rid, iid) + len(str(MQTT_PORT))
            if body > ANSWER_MAX:
                fail("line %d: default answer with %r would be %d bytes" % (line, host, body))

        regions.append({
            "id": rid,
            "name": name,
            "latitude": coordinate(row, line, "latitude", 90),
            "longitude": coordinate(row, line, "longitude", 180),
            "instances": [{
                "id": iid,
                "default": True,
                "endpoints": {
                    "mqtt": {"host": mqtt_host, "regionHost": region_host, "port": MQTT_PORT},
                    "http": {"host": http_host, "port": HTTP_PORT},
                },
                "notify": dict(NOTIFY),
            }],
        })
    if not regions:
        fail("no rows")
    aliases = sdk_aliases(region_ids)
    for i, region in enumerate(regions):
        if region["id"] in aliases:
            # After "name", as docs/catalog.md shows a region.
            items = list(region.items())
            regions[i] = dict(items[:2] + [("aliases", aliases[region["id"]])] + items[2:])
    return {"regions": regions}


def read_rows(path):
    want = ["provider", "region_id", "city", "country_code", "latitude", "longitude"]
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != want:
            fail("%s: header must be %s" % (path, ",".join(want)))
        # Line numbers as an editor shows them: the header is line 1.
        return [(i + 2, row) for i, row in enumerate(reader)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=os.path.join(ROOT, "data", "cloud-regions.csv"))
    ap.add_argument("--output", default=os.path.join(ROOT, "data", "regions.json"),
                    help="output file, or - for stdout")
    args = ap.parse_args()

    text = json.dumps(build(read_rows(args.csv)), indent=2, ensure_ascii=False) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    # rename() so that a daemon reloading on SIGHUP never reads half a file.
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
