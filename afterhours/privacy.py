"""Masking of personal data for logs: ids are fine, numbers and addresses not."""


def mask_phone(number: str) -> str:
    """'+16175550142' -> '+1617***0142'; enough to tell lines apart."""
    if not number:
        return ""
    digits = number.strip()
    if len(digits) <= 6:
        return "***"
    return f"{digits[:5]}***{digits[-4:]}" if len(digits) > 9 else f"***{digits[-4:]}"


def mask_email(address: str) -> str:
    """'dana@harborplumbing.example' -> 'd***@harborplumbing.example'."""
    if not address or "@" not in address:
        return "***"
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"
