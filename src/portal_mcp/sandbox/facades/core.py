"""Facades for data, numbers, time and hashing: json, re, math, statistics, datetime, time, calendar, zoneinfo,
random, decimal, fractions, uuid, hashlib, hmac, base64, secrets, unicodedata."""

from __future__ import annotations

import importlib
import math
from typing import Any, Final

from portal_mcp.sandbox.facades.common import Builder, Services, public

__all__ = ["BUILDERS", "HINTS", "preload_zones"]


def _json(services: Services) -> dict[str, Any]:
    json = importlib.import_module("json")
    members = public("json", "loads dumps JSONDecodeError JSONEncoder JSONDecoder")

    def load(fp: Any, **kwargs: Any) -> Any:
        """json.load(fp): parse the text of an in-memory stream (io.StringIO)."""
        return json.loads(fp.read(), **kwargs)

    def dump(obj: Any, fp: Any, **kwargs: Any) -> None:
        """json.dump(obj, fp): write JSON to an in-memory stream (io.StringIO)."""
        fp.write(json.dumps(obj, **kwargs))

    members.update(load=load, dump=dump)
    return members


def _re(services: Services) -> dict[str, Any]:
    re = importlib.import_module("re")
    members = public("re", "compile search match fullmatch split findall finditer sub subn escape purge")
    members.update(error=re.error, Pattern=re.Pattern, Match=re.Match)
    # Plain ints instead of RegexFlag enum members: the enum machinery is more surface for no benefit.
    for flag in ("IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A", "UNICODE", "U"):
        members[flag] = int(getattr(re, flag))
    members["NOFLAG"] = 0
    return members


def _math(services: Services) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(math).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, float))
    }


def _statistics(services: Services) -> dict[str, Any]:
    return public(
        "statistics",
        "mean fmean geometric_mean harmonic_mean median median_low median_high median_grouped mode multimode "
        "quantiles pstdev pvariance stdev variance correlation covariance linear_regression NormalDist "
        "StatisticsError",
    )


def _datetime(services: Services) -> dict[str, Any]:
    # `datetime.strptime` imports `_strptime` from C at first use; load it now, with the real importer.
    importlib.import_module("_strptime")
    return public("datetime", "datetime date time timedelta timezone tzinfo MINYEAR MAXYEAR UTC")


def _time(services: Services) -> dict[str, Any]:
    return public(
        "time",
        "time time_ns monotonic monotonic_ns perf_counter perf_counter_ns process_time sleep strftime gmtime "
        "localtime mktime struct_time asctime ctime timezone altzone daylight tzname",
    )


def _calendar(services: Services) -> dict[str, Any]:
    return public(
        "calendar",
        "monthrange isleap leapdays weekday monthcalendar month_name month_abbr day_name day_abbr timegm "
        "Calendar TextCalendar HTMLCalendar month calendar prmonth firstweekday setfirstweekday "
        "MONDAY TUESDAY WEDNESDAY THURSDAY FRIDAY SATURDAY SUNDAY IllegalMonthError IllegalWeekdayError",
    )


_ZONES: dict[str, Any] = {}  # filled once in the fork server: a confined worker cannot read the tz database


def preload_zones() -> None:
    """Load every time zone now (ZoneInfo keeps them in its cache), so `ZoneInfo(key)` never reads a file."""
    zoneinfo = importlib.import_module("zoneinfo")
    if _ZONES:
        return
    for key in sorted(zoneinfo.available_timezones()):
        try:
            _ZONES[key] = zoneinfo.ZoneInfo(key)
        except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
            continue


def _zoneinfo(services: Services) -> dict[str, Any]:
    zoneinfo = importlib.import_module("zoneinfo")
    not_found = zoneinfo.ZoneInfoNotFoundError

    def ZoneInfo(key: str) -> Any:
        """ZoneInfo("Europe/Paris"): a time zone of the IANA database."""
        zone = _ZONES.get(key)
        if zone is not None:
            return zone
        try:
            return zoneinfo.ZoneInfo(key)  # a worker without Landlock (spawned) can still read the database
        except (OSError, ValueError) as exc:
            raise not_found(f"No time zone found with key {key}") from exc

    def available_timezones() -> set[str]:
        return set(_ZONES)

    return {"ZoneInfo": ZoneInfo, "ZoneInfoNotFoundError": not_found, "available_timezones": available_timezones}


def _random(services: Services) -> dict[str, Any]:
    random = importlib.import_module("random")
    # A generator of this run's own, seeded from the OS: the fork server's global one is shared by every worker.
    generator = random.Random()
    names = [
        "random",
        "randint",
        "choice",
        "choices",
        "shuffle",
        "sample",
        "uniform",
        "gauss",
        "normalvariate",
        "lognormvariate",
        "randrange",
        "getrandbits",
        "triangular",
        "expovariate",
        "betavariate",
        "gammavariate",
        "paretovariate",
        "weibullvariate",
        "vonmisesvariate",
        "seed",
        "randbytes",
    ]
    members: dict[str, Any] = {name: getattr(generator, name) for name in names}
    members.update(Random=random.Random, SystemRandom=random.SystemRandom)
    return members


def _decimal(services: Services) -> dict[str, Any]:
    decimal = importlib.import_module("decimal")
    members = public(
        "decimal",
        "Decimal Context getcontext setcontext localcontext BasicContext ExtendedContext DecimalException "
        "InvalidOperation DivisionByZero Inexact Rounded Overflow Underflow Subnormal Clamped FloatOperation",
    )
    members.update({name: getattr(decimal, name) for name in dir(decimal) if name.startswith("ROUND_")})
    return members


def _fractions(services: Services) -> dict[str, Any]:
    return public("fractions", "Fraction")


def _uuid(services: Services) -> dict[str, Any]:
    # Not uuid1/getnode: they read the machine's network interfaces.
    return public("uuid", "UUID uuid3 uuid4 uuid5 NAMESPACE_DNS NAMESPACE_URL NAMESPACE_OID NAMESPACE_X500")


def _hashlib(services: Services) -> dict[str, Any]:
    hashlib = importlib.import_module("hashlib")
    hashlib.sha256(b"warm").hexdigest()  # OpenSSL loads its configuration at first use
    hashlib.new("md5", b"warm", usedforsecurity=False).hexdigest()
    return public(
        "hashlib",
        "md5 sha1 sha224 sha256 sha384 sha512 sha3_224 sha3_256 sha3_384 sha3_512 blake2b blake2s shake_128 "
        "shake_256 new pbkdf2_hmac algorithms_available algorithms_guaranteed",
    )


def _hmac(services: Services) -> dict[str, Any]:
    return public("hmac", "new compare_digest digest HMAC")


def _base64(services: Services) -> dict[str, Any]:
    return public(
        "base64",
        "b64encode b64decode standard_b64encode standard_b64decode urlsafe_b64encode urlsafe_b64decode b32encode "
        "b32decode b32hexencode b32hexdecode b16encode b16decode b85encode b85decode a85encode a85decode "
        "encodebytes decodebytes",
    )


def _secrets(services: Services) -> dict[str, Any]:
    return public("secrets", "token_bytes token_hex token_urlsafe choice randbelow randbits compare_digest")


def _unicodedata(services: Services) -> dict[str, Any]:
    return public(
        "unicodedata",
        "normalize is_normalized category name lookup east_asian_width combining decimal digit numeric "
        "bidirectional mirrored decomposition unidata_version",
    )


BUILDERS: Final[dict[str, Builder]] = {
    "json": _json,
    "re": _re,
    "math": _math,
    "statistics": _statistics,
    "datetime": _datetime,
    "time": _time,
    "calendar": _calendar,
    "zoneinfo": _zoneinfo,
    "random": _random,
    "decimal": _decimal,
    "fractions": _fractions,
    "uuid": _uuid,
    "hashlib": _hashlib,
    "hmac": _hmac,
    "base64": _base64,
    "secrets": _secrets,
    "unicodedata": _unicodedata,
}

HINTS: Final[dict[str, dict[str, str]]] = {
    "uuid": {"uuid1": "use uuid.uuid4()", "getnode": "the machine's address is not available"},
    "time": {"strptime": "use `datetime.datetime.strptime(text, format)`"},
}
