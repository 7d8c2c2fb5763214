from models.policy.authresults import assess_sender, parse_authentication_results, trusted_results

OURS_PASS = ("mx.storeolis.ru 1; dkim=pass (2048-bit key; unprotected) header.d=romashka.ru "
             "header.i=@romashka.ru header.b=\"AbC;dEf\"; spf=pass (sender IP is 203.0.113.5) "
             "smtp.mailfrom=romashka.ru; dmarc=pass (p=REJECT sp=REJECT) header.from=romashka.ru")
OURS_FAIL = ("mx.storeolis.ru; dkim=none; spf=fail (domain of romashka.ru does not designate 198.51.100.7) "
             "smtp.mailfrom=romashka.ru; dmarc=fail (p=NONE) header.from=romashka.ru")
FORGED_PASS = "mx.storeolis.ru; dkim=pass header.d=romashka.ru; spf=pass smtp.mailfrom=romashka.ru; dmarc=pass"


def test_parse_reads_authserv_id_version_methods_and_properties_ignoring_comments_and_quoted_semicolons():
    res = parse_authentication_results(OURS_PASS)
    assert res is not None
    assert res.authserv_id == "mx.storeolis.ru" and res.version == "1"
    by_method = {r.method: r for r in res.results}
    assert set(by_method) == {"dkim", "spf", "dmarc"}
    assert by_method["dkim"].properties["header.d"] == "romashka.ru"
    assert by_method["dkim"].properties["header.b"] == "abc;def"
    assert by_method["spf"].properties["smtp.mailfrom"] == "romashka.ru"
    assert by_method["dmarc"].result == "pass"


def test_parse_none_result_has_no_methods():
    res = parse_authentication_results("mx.storeolis.ru; none")
    assert res is not None and res.results == ()


def test_only_topmost_header_is_trusted_when_no_authserv_ids_configured():
    # A forged "pass" further down (added before the mail reached us) must not count.
    trusted = trusted_results([OURS_FAIL, FORGED_PASS], frozenset())
    assert [t.index for t in trusted] == [0]
    assert assess_sender([OURS_FAIL, FORGED_PASS], "ivan@romashka.ru", frozenset()).verified is False


def test_configured_authserv_id_is_trusted_wherever_it_is_and_others_are_ignored():
    forged_top = "mx.evil.example; dmarc=pass header.from=romashka.ru"
    headers = [forged_top, OURS_FAIL]
    trusted = trusted_results(headers, frozenset({"mx.storeolis.ru"}))
    assert [t.authserv_id for t in trusted] == ["mx.storeolis.ru"]
    auth = assess_sender(headers, "ivan@romashka.ru", frozenset({"mx.storeolis.ru"}))
    assert auth.verified is False and "dmarc=fail" in auth.reason


def test_dmarc_fail_is_not_verified_even_with_spf_pass():
    header = "mx.storeolis.ru; spf=pass smtp.mailfrom=romashka.ru; dmarc=fail header.from=romashka.ru"
    assert assess_sender([header], "ivan@romashka.ru", frozenset()).verified is False


def test_spf_fail_without_dkim_pass_is_not_verified_but_spf_fail_with_aligned_dkim_pass_is():
    spf_fail = "mx.storeolis.ru; spf=fail smtp.mailfrom=romashka.ru; dkim=fail header.d=romashka.ru"
    assert assess_sender([spf_fail], "ivan@romashka.ru", frozenset()).verified is False
    rescued = "mx.storeolis.ru; spf=fail smtp.mailfrom=romashka.ru; dkim=pass header.d=romashka.ru"
    assert assess_sender([rescued], "ivan@romashka.ru", frozenset()).verified is True


def test_dkim_pass_for_another_domain_does_not_verify_the_from_domain():
    header = "mx.storeolis.ru; spf=fail smtp.mailfrom=romashka.ru; dkim=pass header.d=bulk-sender.example"
    assert assess_sender([header], "ivan@romashka.ru", frozenset()).verified is False


def test_no_header_or_untrusted_only_means_unknown():
    assert assess_sender([], "ivan@romashka.ru", frozenset()).verified is None
    assert assess_sender([OURS_PASS], "ivan@romashka.ru", frozenset({"mx2.storeolis.ru"})).verified is None


def test_all_pass_is_verified_with_evidence():
    auth = assess_sender([OURS_PASS], "ivan@romashka.ru", frozenset())
    assert auth.verified is True
    assert auth.evidence()["results"] == {"dkim": "pass", "spf": "pass", "dmarc": "pass"}
    assert auth.evidence()["authserv_id"] == "mx.storeolis.ru"
