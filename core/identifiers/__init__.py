"""Find, decode and validate identifiers in free text: 数电票 numbers, 发票代码 + 发票号码, taxpayer ids (税号), dates.

regions holds the province and 计划单列市 tables both kinds use, shapes how merchants type identifiers (separators,
the shape of a 数电票 number), tax_ids the 统一社会信用代码 and other taxpayer ids, and invoice_numbers decoding and
scanning invoice numbers (it masks taxpayer ids first, so it imports tax_ids, never the other way).
"""

from core.identifiers.dates import DateReading, read_date
from core.identifiers.invoice_numbers import (
    UNKNOWN_TYPE,
    DigitalNumberInfo,
    InvoiceCodeInfo,
    InvoiceRef,
    InvoiceScan,
    decode_digital_number,
    decode_invoice_code,
    digital_number_warnings,
    scan,
)
from core.identifiers.regions import PLAN_CITY_NAMES, PROVINCE_NAMES, PROVINCES_2
from core.identifiers.tax_ids import (
    USCC_CHARS,
    USCC_DEPARTMENTS,
    TaxIdCheck,
    check_taxpayer_id,
    find_taxpayer_id,
    normalize_taxpayer_id,
    uscc_check_char,
)

__all__ = [
    "PLAN_CITY_NAMES",
    "PROVINCES_2",
    "PROVINCE_NAMES",
    "UNKNOWN_TYPE",
    "USCC_CHARS",
    "USCC_DEPARTMENTS",
    "DateReading",
    "DigitalNumberInfo",
    "InvoiceCodeInfo",
    "InvoiceRef",
    "InvoiceScan",
    "TaxIdCheck",
    "check_taxpayer_id",
    "decode_digital_number",
    "decode_invoice_code",
    "digital_number_warnings",
    "find_taxpayer_id",
    "normalize_taxpayer_id",
    "read_date",
    "scan",
    "uscc_check_char",
]
