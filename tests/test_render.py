"""Client email templates: every event, both languages, both alternatives say the required facts."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from mail.render import EVENTS, LANGUAGES, EmailRenderer, RenderedEmail, reply_subject, subject_topic

ALL = [(event, language) for event in EVENTS for language in LANGUAGES]

# What each event must tell the client (besides the ticket number), per language.
CLAUSE = {
    "ru": "п. {} Регламента технической поддержки",
    "en": "clause {} of the Technical Support Regulations",
}
EVENT_CLAUSES = {
    "acknowledged": ["2.3", "2.5"],  # 2.5 with the FAQ links of the sample
    "accepted": ["2.3"],
    "refused_unidentified": ["2.6"],
    "refused_out_of_scope": ["2.6"],
    "refused_profanity": ["2.6"],
    "refused_duplicate": ["2.6"],
    "refused_monthly_limit": ["2.6", "2.4"],
    "consulting_not_provided": ["2.4"],
    "faq_answer": ["2.5"],
    "staff_reply": [],
    "resolved": [],
}


@pytest.fixture
def renderer() -> EmailRenderer:
    return EmailRenderer()


def render_sample(renderer: EmailRenderer, event: str, language: str, **changes: object) -> RenderedEmail:
    context = renderer.sample_context(event, language)
    context.update(changes)
    return renderer.render(event, language, context)


def assert_in_both(email: RenderedEmail, *facts: str) -> None:
    for fact in facts:
        assert fact in email.text, f"{fact!r} missing from the text part:\n{email.text}"
        assert fact in email.html, f"{fact!r} missing from the HTML part"


@pytest.mark.parametrize(("event", "language"), ALL)
def test_every_event_names_the_ticket_and_cites_its_clause_in_text_and_html(
    renderer: EmailRenderer, event: str, language: str
) -> None:
    email = render_sample(renderer, event, language)

    assert_in_both(email, "[#1042]", *(CLAUSE[language].format(c) for c in EVENT_CLAUSES[event]))
    assert "[#1042]" in email.subject
    assert "\n" not in email.subject


@pytest.mark.parametrize(("event", "language"), ALL)
def test_every_email_greets_politely_and_signs_as_support(
    renderer: EmailRenderer, event: str, language: str
) -> None:
    email = render_sample(renderer, event, language, client_name="", staff_name="")

    if language == "ru":
        assert_in_both(email, "Здравствуйте!", "С уважением", "служба технической поддержки Storeolis")
    else:
        assert_in_both(email, "Hello,", "Kind regards", "Storeolis Technical Support")
    assert_in_both(email, "support@storeolis.ru")


@pytest.mark.parametrize(("event", "language"), ALL)
def test_a_staff_comment_appears_in_both_parts_when_given(
    renderer: EmailRenderer, event: str, language: str
) -> None:
    email = render_sample(renderer, event, language, comment="Проверьте раздел «Интеграции»")

    assert_in_both(email, "Проверьте раздел «Интеграции»")


def test_no_comment_section_without_a_comment(renderer: EmailRenderer) -> None:
    email = render_sample(renderer, "accepted", "ru", comment="")

    assert "Комментарий специалиста" not in email.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_client_name_and_staff_name_are_used(renderer: EmailRenderer, language: str) -> None:
    email = render_sample(
        renderer, "staff_reply", language, client_name="Ольга Ким", staff_name="Пётр Иванов"
    )

    assert_in_both(email, "Ольга Ким", "Пётр Иванов")


def test_unidentified_refusal_says_what_to_include_next_time(renderer: EmailRenderer) -> None:
    ru = render_sample(renderer, "refused_unidentified", "ru")
    en = render_sample(renderer, "refused_unidentified", "en")

    assert_in_both(ru, "наименование организации", "ИНН", "номер договора", "зарегистрирован")
    assert_in_both(en, "name of your company", "INN", "contract number", "registered")


@pytest.mark.parametrize("language", LANGUAGES)
def test_duplicate_refusal_points_to_the_original_ticket(renderer: EmailRenderer, language: str) -> None:
    email = render_sample(renderer, "refused_duplicate", language, original_ticket_number=977)

    assert_in_both(email, "[#977]")


@pytest.mark.parametrize("language", LANGUAGES)
def test_monthly_limit_refusal_states_the_limit_and_offers_paid_services(
    renderer: EmailRenderer, language: str
) -> None:
    email = render_sample(renderer, "refused_monthly_limit", language, monthly_limit=5)

    # The number comes from the context (settings), not from the template.
    assert_in_both(
        email, "свыше 5 в календарный месяц" if language == "ru" else "exceeds 5 in a calendar month"
    )
    assert_in_both(email, "дополнительных услуг" if language == "ru" else "additional services")


@pytest.mark.parametrize("language", LANGUAGES)
def test_consulting_refusal_offers_a_separate_agreement(renderer: EmailRenderer, language: str) -> None:
    email = render_sample(renderer, "consulting_not_provided", language)

    assert_in_both(email, "по дополнительной договорённости" if language == "ru" else "separate agreement")


@pytest.mark.parametrize("language", LANGUAGES)
def test_faq_answer_lists_links_readably_in_text_and_as_anchors_in_html(
    renderer: EmailRenderer, language: str
) -> None:
    links = [{"title": "Настройка ККТ", "url": "https://storeolis.ru/help/kkt?tab=1&x=2"}]
    email = render_sample(renderer, "faq_answer", language, faq_links=links, faq_answer_text="Смените тариф.")

    assert "Настройка ККТ (https://storeolis.ru/help/kkt?tab=1&x=2)" in email.text
    assert '<a href="https://storeolis.ru/help/kkt?tab=1&amp;x=2">Настройка ККТ</a>' in email.html
    assert_in_both(email, "Смените тариф.")


def test_faq_link_with_a_script_url_is_refused(renderer: EmailRenderer) -> None:
    with pytest.raises(ValueError, match="http"):
        render_sample(renderer, "faq_answer", "ru", faq_links=[{"title": "x", "url": "javascript:alert(1)"}])


@pytest.mark.parametrize("language", LANGUAGES)
def test_staff_reply_text_is_the_content_with_line_breaks_kept(
    renderer: EmailRenderer, language: str
) -> None:
    reply = "Добрый день.\n- откройте настройки\n1. нажмите «Сохранить»\nПуть: C:\\Storeolis\\kassa"
    email = render_sample(renderer, "staff_reply", language, reply_text=reply)

    assert reply in email.text  # no Markdown escaping of "-", "1." or backslashes in plain text
    assert "Добрый день.<br>- откройте настройки" in email.html


@pytest.mark.parametrize("language", LANGUAGES)
def test_resolved_email_explains_how_to_reopen(renderer: EmailRenderer, language: str) -> None:
    email = render_sample(renderer, "resolved", language)

    assert_in_both(email, "открыто повторно" if language == "ru" else "reopened")


HOSTILE = '<script>alert("x")</script>'


@pytest.mark.parametrize("field", ["client_name", "original_subject", "comment", "staff_name"])
def test_hostile_client_and_staff_values_are_escaped_in_html(renderer: EmailRenderer, field: str) -> None:
    email = render_sample(renderer, "accepted", "ru", **{field: HOSTILE})

    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert HOSTILE in email.text  # plain text is not HTML: the client sees exactly what was written


def test_hostile_staff_reply_text_is_escaped(renderer: EmailRenderer) -> None:
    email = render_sample(renderer, "staff_reply", "en", reply_text=f"line one\n{HOSTILE}\n<b>bold</b>")

    assert "<script>" not in email.html and "<b>bold" not in email.html
    assert "&lt;b&gt;bold&lt;/b&gt;" in email.html
    assert f"line one\n{HOSTILE}\n<b>bold</b>" in email.text


def test_a_missing_event_variable_raises_instead_of_rendering_blank(renderer: EmailRenderer) -> None:
    context = renderer.sample_context("refused_duplicate", "ru")
    del context["original_ticket_number"]

    with pytest.raises(jinja2.UndefinedError, match="original_ticket_number"):
        renderer.render("refused_duplicate", "ru", context)


def test_a_missing_common_variable_raises(renderer: EmailRenderer) -> None:
    context = renderer.sample_context("accepted", "en")
    del context["ticket_number"]

    with pytest.raises(jinja2.UndefinedError, match="ticket_number"):
        renderer.render("accepted", "en", context)


def test_unknown_event_or_language_is_a_value_error(renderer: EmailRenderer) -> None:
    context = renderer.sample_context("accepted", "ru")

    with pytest.raises(ValueError, match="event"):
        renderer.render("refused_quota", "ru", context)
    with pytest.raises(ValueError, match="language"):
        renderer.render("accepted", "de", context)


def test_renderer_settings_reach_the_templates() -> None:
    renderer = EmailRenderer(
        company_name="Сторeолис", support_address="help@example.ru", signature="Отдел сервиса\n8 800"
    )

    email = render_sample(renderer, "accepted", "ru")

    assert_in_both(email, "help@example.ru", "Отдел сервиса")
    assert "Отдел сервиса\n8 800" in email.text


# --- subjects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Не работает касса", "Re: Не работает касса [#12]"),
        ("Re: Не работает касса", "Re: Не работает касса [#12]"),
        ("RE: re: Fwd: FW: Отв: Пересл: Не работает касса", "Re: Не работает касса [#12]"),
        ("ОТВ:  Re[3]: Re(2):Не   работает\tкасса", "Re: Не работает касса [#12]"),
        ("Re: Не работает касса [#12]", "Re: Не работает касса [#12]"),
        ("Re: [# 12] Не работает касса", "Re: [#12] Не работает касса"),
        ("Re: Не работает касса [#123]", "Re: Не работает касса [#123] [#12]"),
        ("Return policy", "Re: Return policy [#12]"),
        ("", ""),
        ("Re: Fwd: ", ""),
    ],
)
def test_reply_subject_rule(original: str, expected: str) -> None:
    assert reply_subject(original, 12) == expected


def test_topic_drops_prefixes_and_our_tag() -> None:
    assert subject_topic("Re: Fwd: Касса [#12]", 12) == "Касса"


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize(("language", "default"), [("ru", "обращение"), ("en", "request")])
def test_empty_original_subject_gets_a_default_subject(
    renderer: EmailRenderer, event: str, language: str, default: str
) -> None:
    email = render_sample(renderer, event, language, original_subject="  ")

    assert default in email.subject.lower()
    if event == "acknowledged":  # its own shape (issue 20): "Обращение [#N] зарегистрировано"
        assert email.subject.startswith(default.capitalize() + " [#1042]")
    else:
        assert email.subject.endswith("[#1042]")
    assert not email.subject.startswith("Re:")


@pytest.mark.parametrize(("event", "language"), ALL)
@pytest.mark.parametrize("original", ["Re: Не загружается каталог товаров", ""])
def test_only_the_acknowledgement_says_registered_in_its_subject(
    renderer: EmailRenderer, event: str, language: str, original: str
) -> None:
    """A client tells the acknowledgement from a decision by its subject alone."""
    subject = render_sample(renderer, event, language, original_subject=original).subject.lower()
    says = "зарегистрировано" in subject or "registered" in subject
    assert says == (event == "acknowledged"), subject


def test_reply_keeps_the_clients_subject(renderer: EmailRenderer) -> None:
    email = render_sample(renderer, "refused_profanity", "ru", original_subject="Fwd: Счёт [#1042]")

    assert email.subject == "Re: Счёт [#1042]"


# --- overrides and start-up check ------------------------------------------------------------------


def test_shipped_templates_pass_the_startup_check(renderer: EmailRenderer) -> None:
    assert renderer.check_all() == []


def test_override_dir_replaces_one_shipped_template(tmp_path: Path) -> None:
    (tmp_path / "accepted.ru.html").write_text(
        '{% extends "_layout.ru.html" %}{% block body %}<p>Приняли, номер [#{{ ticket_number }}].</p>{% endblock %}',
        encoding="utf-8",
    )
    (tmp_path / "accepted.ru.subject.txt").write_text("Принято [#{{ ticket_number }}]", encoding="utf-8")
    renderer = EmailRenderer(override_dir=tmp_path)

    email = render_sample(renderer, "accepted", "ru")
    other = render_sample(renderer, "accepted", "en")

    assert "Приняли, номер [#1042]." in email.text
    assert email.subject == "Принято [#1042]"
    assert "has been accepted" in other.text  # everything not overridden is still shipped text
    assert renderer.check_all() == []


@pytest.mark.parametrize(
    "broken",
    [
        "<p>{{ undefined_thing }} [#{{ ticket_number }}]</p>",
        "<p>{% if ticket_number %}unclosed [#{{ ticket_number }}]</p>",
        "<p>{{ ticket_number | no_such_filter }}</p>",
    ],
)
def test_check_all_reports_a_broken_override(tmp_path: Path, broken: str) -> None:
    (tmp_path / "resolved.en.html").write_text(broken, encoding="utf-8")

    problems = EmailRenderer(override_dir=tmp_path).check_all()

    assert len(problems) == 1
    assert problems[0].startswith("resolved.en:")


def test_check_all_reports_an_override_without_the_ticket_number(tmp_path: Path) -> None:
    (tmp_path / "resolved.ru.subject.txt").write_text("Закрыто", encoding="utf-8")

    problems = EmailRenderer(override_dir=tmp_path).check_all()

    assert problems == ["resolved.ru: the subject does not mention the ticket number [#1042]"]


def test_check_all_reports_a_misspelt_override_and_a_missing_dir(tmp_path: Path) -> None:
    (tmp_path / "acepted.ru.html").write_text("<p>typo</p>", encoding="utf-8")

    assert EmailRenderer(override_dir=tmp_path).check_all() == [
        "override acepted.ru.html is not a known template name and is never used"
    ]
    assert "does not exist" in EmailRenderer(override_dir=tmp_path / "nope").check_all()[0]


def test_check_all_reports_a_template_that_fails_at_render_time(tmp_path: Path) -> None:
    (tmp_path / "accepted.en.html").write_text("<p>[#{{ ticket_number }}] {{ 1 / 0 }}</p>", encoding="utf-8")

    problems = EmailRenderer(override_dir=tmp_path).check_all()

    assert problems == ["accepted.en: ZeroDivisionError: division by zero"]
