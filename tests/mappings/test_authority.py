"""mappings.authority: when two assigning authorities (HD) are one."""

from __future__ import annotations

import pytest

from mappings.authority import authority_of, identifier_authority, same_authority


@pytest.mark.parametrize(("first", "second", "same"), [
    ("GENHOSP", "GENHOSP&1.2.3.4&ISO", True),  # one side without the universal id
    ("&1.2.3.4&ISO", "GENHOSP&1.2.3.4&ISO", True),  # the universal ids match
    ("GENHOSP&1.2.3.4&ISO", "GENHOSP&5.6.7.8&ISO", False),  # the universal id wins
    ("GENHOSP&1.2.3.4&ISO", "GENHOSP&1.2.3.4&iso", True),
    ("GENHOSP&1.2.3.4&ISO", "GENHOSP&1.2.3.4&DNS", False),
    ("GENHOSP&1.2.3.4", "GENHOSP&1.2.3.4&ISO", True),  # a type on one side only
    ("GENHOSP", "EASTHOSP", False),
    ("GENHOSP", "&1.2.3.4&ISO", False),  # nothing to compare them by
    ("", "", True),  # both unknown, as before
    ("", "GENHOSP", False),
    ("", "&1.2.3.4&ISO", False),
])
def test_two_hds_name_one_authority(first, second, same):
    a, b = authority_of(first, "&"), authority_of(second, "&")
    assert (same_authority(a, b), same_authority(b, a)) == (same, same)


def test_an_identifier_without_an_authority_is_the_sending_facilitys():
    facility = authority_of("HOSP^2.16.840.1^ISO", "^")
    assert identifier_authority(authority_of("", "&"), facility) == facility
    assert identifier_authority(authority_of("EAST", "&"), facility) == authority_of("EAST", "&")
