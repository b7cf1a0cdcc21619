"""ISO 3166-1 alpha-2 codes mapped to UN M49 regions: the catalog validator's source of truth.

Each code maps to ``(name, region, subregion)``. ``region`` is the M49 top level (Africa, Americas,
Asia, Europe, Oceania); ``subregion`` is the M49 *intermediate* region where one exists (e.g.
"Western Africa", "South America", "Caribbean") and otherwise the M49 sub-region ("Eastern Asia",
"Polynesia"). M49 does not list Taiwan separately; we place TW in Eastern Asia. Antarctica (AQ) has
no M49 region, so it maps to ``None`` and cannot be used as a concept's culture.
"""

from __future__ import annotations

REGIONS: tuple[str, ...] = ("Africa", "Americas", "Asia", "Europe", "Oceania")

# subregion -> region, the allowed pairs (also used for community slugs without an ISO code).
SUBREGIONS: dict[str, str] = {
    "Northern Africa": "Africa", "Western Africa": "Africa", "Eastern Africa": "Africa",
    "Middle Africa": "Africa", "Southern Africa": "Africa",
    "Caribbean": "Americas", "Central America": "Americas", "South America": "Americas",
    "Northern America": "Americas",
    "Central Asia": "Asia", "Eastern Asia": "Asia", "South-eastern Asia": "Asia",
    "Southern Asia": "Asia", "Western Asia": "Asia",
    "Eastern Europe": "Europe", "Northern Europe": "Europe", "Southern Europe": "Europe",
    "Western Europe": "Europe",
    "Australia and New Zealand": "Oceania", "Melanesia": "Oceania", "Micronesia": "Oceania",
    "Polynesia": "Oceania",
}

# subregion -> "CODE Name; CODE Name; ..." (compact, easy to audit against the M49 table)
_TABLE: dict[str, str] = {
    "Northern Africa": "DZ Algeria; EG Egypt; LY Libya; MA Morocco; SD Sudan; TN Tunisia; "
    "EH Western Sahara",
    "Eastern Africa": "IO British Indian Ocean Territory; BI Burundi; KM Comoros; DJ Djibouti; "
    "ER Eritrea; ET Ethiopia; TF French Southern Territories; KE Kenya; MG Madagascar; MW Malawi; "
    "MU Mauritius; YT Mayotte; MZ Mozambique; RE Réunion; RW Rwanda; SC Seychelles; SO Somalia; "
    "SS South Sudan; UG Uganda; TZ Tanzania; ZM Zambia; ZW Zimbabwe",
    "Middle Africa": "AO Angola; CM Cameroon; CF Central African Republic; TD Chad; CG Congo; "
    "CD Democratic Republic of the Congo; GQ Equatorial Guinea; GA Gabon; "
    "ST Sao Tome and Principe",
    "Southern Africa": "BW Botswana; SZ Eswatini; LS Lesotho; NA Namibia; ZA South Africa",
    "Western Africa": "BJ Benin; BF Burkina Faso; CV Cabo Verde; CI Côte d'Ivoire; GM Gambia; "
    "GH Ghana; GN Guinea; GW Guinea-Bissau; LR Liberia; ML Mali; MR Mauritania; NE Niger; "
    "NG Nigeria; SH Saint Helena; SN Senegal; SL Sierra Leone; TG Togo",
    "Caribbean": "AI Anguilla; AG Antigua and Barbuda; AW Aruba; BS Bahamas; BB Barbados; "
    "BQ Bonaire, Sint Eustatius and Saba; VG British Virgin Islands; KY Cayman Islands; CU Cuba; "
    "CW Curaçao; DM Dominica; DO Dominican Republic; GD Grenada; GP Guadeloupe; HT Haiti; "
    "JM Jamaica; MQ Martinique; MS Montserrat; PR Puerto Rico; BL Saint Barthélemy; "
    "KN Saint Kitts and Nevis; LC Saint Lucia; MF Saint Martin; "
    "VC Saint Vincent and the Grenadines; SX Sint Maarten; TT Trinidad and Tobago; "
    "TC Turks and Caicos Islands; VI United States Virgin Islands",
    "Central America": "BZ Belize; CR Costa Rica; SV El Salvador; GT Guatemala; HN Honduras; "
    "MX Mexico; NI Nicaragua; PA Panama",
    "South America": "AR Argentina; BO Bolivia; BV Bouvet Island; BR Brazil; CL Chile; "
    "CO Colombia; EC Ecuador; FK Falkland Islands; GF French Guiana; GY Guyana; PY Paraguay; "
    "PE Peru; GS South Georgia and the South Sandwich Islands; SR Suriname; UY Uruguay; "
    "VE Venezuela",
    "Northern America": "BM Bermuda; CA Canada; GL Greenland; PM Saint Pierre and Miquelon; "
    "US United States",
    "Central Asia": "KZ Kazakhstan; KG Kyrgyzstan; TJ Tajikistan; TM Turkmenistan; UZ Uzbekistan",
    "Eastern Asia": "CN China; HK Hong Kong; MO Macao; KP North Korea; JP Japan; MN Mongolia; "
    "KR South Korea; TW Taiwan",
    "South-eastern Asia": "BN Brunei; KH Cambodia; ID Indonesia; LA Laos; MY Malaysia; "
    "MM Myanmar; PH Philippines; SG Singapore; TH Thailand; TL Timor-Leste; VN Vietnam",
    "Southern Asia": "AF Afghanistan; BD Bangladesh; BT Bhutan; IN India; IR Iran; MV Maldives; "
    "NP Nepal; PK Pakistan; LK Sri Lanka",
    "Western Asia": "AM Armenia; AZ Azerbaijan; BH Bahrain; CY Cyprus; GE Georgia; IQ Iraq; "
    "IL Israel; JO Jordan; KW Kuwait; LB Lebanon; OM Oman; QA Qatar; SA Saudi Arabia; "
    "PS Palestine; SY Syria; TR Türkiye; AE United Arab Emirates; YE Yemen",
    "Eastern Europe": "BY Belarus; BG Bulgaria; CZ Czechia; HU Hungary; PL Poland; MD Moldova; "
    "RO Romania; RU Russia; SK Slovakia; UA Ukraine",
    "Northern Europe": "AX Åland Islands; DK Denmark; EE Estonia; FO Faroe Islands; FI Finland; "
    "GG Guernsey; IS Iceland; IE Ireland; IM Isle of Man; JE Jersey; LV Latvia; LT Lithuania; "
    "NO Norway; SJ Svalbard and Jan Mayen; SE Sweden; GB United Kingdom",
    "Southern Europe": "AL Albania; AD Andorra; BA Bosnia and Herzegovina; HR Croatia; "
    "GI Gibraltar; GR Greece; VA Holy See; IT Italy; MT Malta; ME Montenegro; MK North Macedonia; "
    "PT Portugal; SM San Marino; RS Serbia; SI Slovenia; ES Spain",
    "Western Europe": "AT Austria; BE Belgium; FR France; DE Germany; LI Liechtenstein; "
    "LU Luxembourg; MC Monaco; NL Netherlands; CH Switzerland",
    "Australia and New Zealand": "AU Australia; CX Christmas Island; CC Cocos (Keeling) Islands; "
    "HM Heard Island and McDonald Islands; NZ New Zealand; NF Norfolk Island",
    "Melanesia": "FJ Fiji; NC New Caledonia; PG Papua New Guinea; SB Solomon Islands; VU Vanuatu",
    "Micronesia": "GU Guam; KI Kiribati; MH Marshall Islands; FM Micronesia; NR Nauru; "
    "MP Northern Mariana Islands; PW Palau; UM United States Minor Outlying Islands",
    "Polynesia": "AS American Samoa; CK Cook Islands; PF French Polynesia; NU Niue; "
    "PN Pitcairn; WS Samoa; TK Tokelau; TO Tonga; TV Tuvalu; WF Wallis and Futuna",
}


def _build() -> dict[str, tuple[str, str | None, str | None]]:
    table: dict[str, tuple[str, str | None, str | None]] = {}
    for subregion, entries in _TABLE.items():
        for entry in entries.split(";"):
            code, name = entry.strip().split(" ", 1)
            if code in table:  # pragma: no cover - guards the table itself
                raise RuntimeError(f"regions table lists {code} twice")
            table[code] = (name, SUBREGIONS[subregion], subregion)
    table["AQ"] = ("Antarctica", None, None)
    return table


COUNTRIES: dict[str, tuple[str, str | None, str | None]] = _build()


def is_iso_code(code: str) -> bool:
    """True when ``code`` is an ISO 3166-1 alpha-2 code we know (upper case)."""
    return code in COUNTRIES


def region_of(code: str) -> tuple[str | None, str | None]:
    """(region, subregion) of an ISO code; raises KeyError naming the code when unknown."""
    try:
        _, region, subregion = COUNTRIES[code]
    except KeyError:
        raise KeyError(f"unknown ISO 3166-1 alpha-2 code {code!r}") from None
    return region, subregion


def country_name(code: str) -> str:
    """Short English name of an ISO code (for messages and defaults)."""
    return COUNTRIES[code][0]
