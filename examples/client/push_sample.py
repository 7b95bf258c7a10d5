"""Push the shipped sample batches with a client generated from the API description.

Generate the client (openapi-python-client from PyPI; not kept in the repository), then run this
from the repository's root against a running gateway:

    openapi-python-client generate --path src/ingest/openapi.json --meta none \
        --output-path /tmp/client/credit_gateway_client
    PYTHONPATH=/tmp/client python3 examples/client/push_sample.py [GATEWAY_DIR] [BASE_URL]

GATEWAY_DIR holds the gateway's certs/ (default .: where `credit-gateway certs init` or the first
`serve` made them); BASE_URL defaults to https://localhost:8443; the samples are read from
examples/samples (or $SAMPLES). docs/integrate/agency-api.md shows it; tests/openapi.rs runs it.
"""
import json
import os
import ssl
import sys
from pathlib import Path

from credit_gateway_client import Client
from credit_gateway_client.api.agency_api import get_receipt, list_mappings, push_records
from credit_gateway_client.models import (
    AbnormalOperationRecord, AdministrativeRecord, AgreementPerformanceRecord, CommitmentRecord,
    DishonestListRecord, Error, EvaluationResultRecord, HonorRecord, JudicialRecord,
    LawComplianceRecord, OtherPublicRecord, QualificationRecord, Receipt, RegistrationRecord,
    SourceBatch, StatutoryOtherRecord,
)

gateway = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
base_url = sys.argv[2] if len(sys.argv) > 2 else "https://localhost:8443"
samples = Path(os.environ.get("SAMPLES", "examples/samples"))

# Mutual TLS: the gateway's CA, and the agency's certificate and key.
tls = ssl.create_default_context(cafile=gateway / "certs/ca.pem")
tls.load_cert_chain(gateway / "certs/clients/medical_insurance.pem",
                    gateway / "certs/clients/medical_insurance-key.pem")
# The agency API's security is the certificate alone: a plain Client (with a token,
# AuthenticatedClient carries the subject's authorization for queryEvaluation).
agency = Client(base_url=base_url, verify_ssl=tls, raise_on_unexpected_status=True)

mappings = list_mappings.sync(client=agency)
print("may push:", ", ".join(m.id for m in mappings.mappings))

# A canonical batch, typed: one model per category (the description's oneOf on `category`).
BY_CATEGORY = {
    "registration": RegistrationRecord, "judicial": JudicialRecord,
    "administrative": AdministrativeRecord, "qualification": QualificationRecord,
    "abnormal_operation": AbnormalOperationRecord, "dishonest_list": DishonestListRecord,
    "agreement_performance": AgreementPerformanceRecord, "commitment": CommitmentRecord,
    "evaluation_result": EvaluationResultRecord, "law_compliance": LawComplianceRecord,
    "honor": HonorRecord, "other_public": OtherPublicRecord, "statutory_other": StatutoryOtherRecord,
}
records = [BY_CATEGORY[r["category"]].from_dict(r)
           for r in json.loads((samples / "canonical.json").read_text(encoding="utf-8"))]
receipt = push_records.sync(client=agency, body=records, mapping="canonical")
assert isinstance(receipt, Receipt), receipt
print(f"canonical: receipt {receipt.receipt_id}: {receipt.accepted} of {receipt.total} accepted "
      f"({receipt.new} new, {receipt.updated} updated, {receipt.unchanged} unchanged)")
for r in receipt.rejected:
    print(f"  rejected #{r.index} {r.record_id}: {r.canonical_field}: {r.reason}")
print(f"  audit #{receipt.audit.seq}, signed {receipt.signature.algorithm} by {receipt.signature.key_id}")

# A source system's own format: the mapping finds the records.
batch = SourceBatch.from_dict(json.loads((samples / "mi-penalties.json").read_text(encoding="utf-8")))
receipt = push_records.sync(client=agency, body=batch, mapping="mi-penalties")
print(f"mi-penalties: {receipt.accepted} of {receipt.total} accepted, "
      f"rejected: {[r.record_id for r in receipt.rejected]}")

# The receipt again, and a typed error.
again = get_receipt.sync(client=agency, id=receipt.receipt_id)
assert again.receipt_id == receipt.receipt_id
refused = push_records.sync(client=agency, body=batch, mapping="no-such-mapping")
assert isinstance(refused, Error)
print(f"unknown mapping: {refused.error.code}: {refused.error.message}")
