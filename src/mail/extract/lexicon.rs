//! The words the extractor looks for, in lowercase, by what they mean: code keywords, the
//! contexts that make a number something else (orders, phones, prices, dates, addresses),
//! and the words of verification and unsubscribe links. Data only; `words` builds the
//! lookup from it.
//!
//! Words of space-separated scripts are matched as whole words (`exact`), by their start
//! (`prefix`, for inflections: Polish `kodu`, Turkish `kodunuz`, Russian `кода`) or by their
//! end (`suffix`, for compounds: German `Bestätigungscode`, Dutch `verificatiecode`).
//! Chinese, Japanese and Korean runs have no spaces and take particles (`인증번호는`), so
//! `CJK_WORDS` are found anywhere inside a run.

use crate::mail::extract::words::{
    ADDRESS, CODE_STRONG, CODE_WEAK, CURRENCY, DATE, DENY_NEIGHBOR, LINK_OTHER, NOT_CODE, ORDER,
    PHONE, PRICE, UNIT, UNSUBSCRIBE, VERIFY, VERIFY_WEAK,
};

/// Words of one meaning and how each is matched, each list separated by whitespace.
pub(crate) struct Group {
    pub(crate) class: u32,
    pub(crate) exact: &'static str,
    pub(crate) prefix: &'static str,
    pub(crate) suffix: &'static str,
}

pub(crate) const GROUPS: &[Group] = &[
    // "Code", "OTP", "PIN", "passcode" and their compounds: the strongest sign of a code.
    Group {
        class: CODE_STRONG,
        exact: "code codes otp otps pin passcode passcodes totp 2fa mfa cod codul kód kode koden \
            koodi kodi kodas ओटीपी कोड पिन",
        prefix: "kod códig codig codic kódo kódj код رمز كود",
        suffix: "code codes kode koden koodi kod код رمز كود",
    },
    // Words that often stand beside a code without naming it.
    Group {
        class: CODE_WEAK,
        exact: "token security login signin password passwort passwd contraseña senha wachtwoord \
            hasło haslo пароль şifre sifre connexion sécurité securite seguridad segurança \
            seguranca sicurezza güvenlik guvenlik onay सत्यापन पासवर्ड تحقق التحقق تأكيد \
            التأكيد",
        prefix: "verif vérif weryfik confirm conferm bestätig bestaetig bevestig potwierd подтвер \
            підтвер doğrula dogrula onayla authent autentic autentiz uwierzyteln аутентиф \
            sicherheit beveilig bezpiecz безопасн anmelde einmal jednoraz одноразов",
        suffix: "passwort wachtwoord",
    },
    // Compounds ending in "code" that name something else, and words that make a code
    // keyword beside them name something else ("promo code", "code postal").
    Group {
        class: NOT_CODE | DENY_NEIGHBOR,
        exact: "postcode zipcode barcode qrcode promocode promocodes sourcecode gutscheincode \
            rabattcode aktionscode fehlercode quellcode kortingscode actiecode landcode \
            ländercode rabatkode промокод промокоды promo discount coupon voucher gift zip \
            postal post area country tracking error source qr bar referral decode encode \
            unicode opcode promotional promocional promozionale postale sconto rabatowy \
            pocztowy réduction reduction descuento desconto indirim kupon rabatt gutschein \
            korting скидки",
        prefix: "",
        suffix: "",
    },
    Group {
        class: ORDER,
        exact: "order orders invoice receipt ticket booking reservation reference ref \
            transaction shipment tracking customer account acct member membership case nr id \
            bestellung rechnung auftrag commande facture pedido factura encomenda fatura \
            ordine fattura bestelling factuur faktura ordernummer счет счёт طلب فاتورة ऑर्डर",
        prefix: "kunden zamówieni zamowieni заказ sipariş siparis",
        suffix: "nummer طلب",
    },
    Group {
        class: PHONE,
        exact: "phone tel telephone call fax mobile cell hotline whatsapp téléphone teléfono \
            telefone telefono telefoon тел هاتف फोन फ़ोन",
        prefix: "telefon телефон",
        suffix: "",
    },
    Group {
        class: PRICE,
        exact: "price total subtotal amount cost fee tax vat balance paid preis betrag summe \
            prix montant precio importe preço valor prezzo importo totale prijs bedrag \
            totaal cena kwota suma цена сумма стоимость fiyat tutar toplam السعر المبلغ कीमत \
            राशि",
        prefix: "gesamt",
        suffix: "",
    },
    Group {
        class: CURRENCY,
        exact: "usd eur gbp chf jpy cny rmb inr rub try pln sek nok dkk krw aud cad brl mxn euro \
            euros dollar dollars zł zl kr yuan yen won rupees руб рублей лир грн",
        prefix: "",
        suffix: "",
    },
    Group {
        class: UNIT,
        exact: "min mins minute minutes hour hours hrs sec secs seconds days km kg mb gb kb \
            miles points pts minuten stunden tage heures jours minutos horas días dias \
            minuti ore giorni uur dagen dakika saat gün",
        prefix: "minut минут секунд",
        suffix: "",
    },
    // Months and weekdays: a number beside one is part of a date.
    Group {
        class: DATE,
        exact: "jan feb mar apr jun jul aug sep sept oct nov dec january february march april \
            may june july august september october november december monday tuesday \
            wednesday thursday friday saturday sunday mon tue wed thu fri sat sun date \
            januar februar märz mai juni juli oktober dezember montag dienstag mittwoch \
            donnerstag freitag samstag sonntag datum janvier février mars avril juin juillet \
            août septembre octobre novembre décembre lundi mardi mercredi jeudi vendredi \
            samedi dimanche enero febrero marzo abril mayo junio julio agosto septiembre \
            octubre noviembre diciembre lunes martes miércoles jueves viernes sábado domingo \
            fecha janeiro fevereiro março maio junho julho setembro outubro dezembro gennaio \
            febbraio aprile maggio giugno luglio settembre ottobre dicembre januari februari \
            maart mei augustus ocak şubat nisan mayıs haziran temmuz ağustos eylül ekim \
            kasım aralık tarih",
        prefix: "stycz lut kwiet czerw lipc sierp wrzes wrześ paźdz pazdz listopad grud январ \
            феврал март апрел мая июн июл август сентябр октябр ноябр декабр",
        suffix: "",
    },
    // Street words, company forms and footer words: a number among them is an address.
    Group {
        class: ADDRESS,
        exact: "street st ave avenue road rd blvd boulevard lane ln drive parkway pkwy plaza \
            suite ste floor building highway hwy inc ltd llc gmbh corp corporation sas sarl \
            srl bv plc limited pty copyright rights reserved address adresse dirección \
            endereço indirizzo adres адрес adresi str plz postcode zipcode zip postal cep \
            rue calle avenida rua praça via viale piazza corso straat laan plein gracht ul \
            ulica aleja улица ул проспект sokak sok cad cadde caddesi mahallesi mah bulvarı \
            usa deutschland germany france españa brasil italia nederland polska россия \
            türkiye",
        prefix: "",
        suffix: "straße strasse str allee platz gasse weg laan",
    },
    Group {
        class: VERIFY,
        exact: "magic reset validate validation valider validar ativar ativação ativacao attiva \
            attivare attivazione activeer activeren restablecer redefinir zurücksetzen \
            zuruecksetzen réinitialiser reinitialiser reimposta reimpostare herstellen \
            resetuj zresetuj sıfırla sifirla onayla onaylayın etkinleştir सत्यापित पुष्टि \
            सक्रिय تأكيد تفعيل تحقق",
        prefix: "verif vérif weryfik confirm conferm bestätig bestaetig bevestig potwierd подтвер \
            підтвер doğrula dogrula activat activar activer activación aktivier aktyw актив \
            сброс восстанов",
        suffix: "",
    },
    Group {
        class: VERIFY_WEAK,
        exact: "login signin sign log logon auth token password passwort anmelden einloggen \
            connexion connecter entrar acceder accedi accedere inloggen zaloguj войти giriş \
            giris contraseña senha wachtwoord hasło haslo пароль şifre sifre access callback \
            पासवर्ड",
        prefix: "authent autentic",
        suffix: "",
    },
    Group {
        class: UNSUBSCRIBE,
        exact: "unsubscribe unsub unsubscribed optout opt-out abmelden baja afmelden wypisz \
            désabonner desabonner abonelikten removeme अनसब्सक्राइब الاشتراك",
        prefix: "abbestell désinscri desinscri désabonn desabonn desuscri descadastr disiscri \
            uitschrijv wypis отпис відпис unsubscri",
        suffix: "",
    },
    // Links that are never the one to click: policies, help, social sites, images.
    Group {
        class: LINK_OTHER,
        exact: "privacy terms policy help support faq contact preferences settings facebook \
            twitter instagram linkedin youtube tiktok pinterest apps store play browser \
            webversion datenschutz impressum agb hilfe confidentialité aide privacidad ayuda \
            términos privacidade ajuda aiuto termini voorwaarden pomoc prywatności помощь \
            gizlilik yardım png jpg jpeg gif svg css ico webp",
        prefix: "конфиденциальн",
        suffix: "",
    },
];

/// Words inside runs of Chinese, Japanese or Korean characters.
pub(crate) const CJK_WORDS: &[(&str, u32)] = &[
    ("验证码", CODE_STRONG),
    ("驗證碼", CODE_STRONG),
    ("校验码", CODE_STRONG),
    ("校驗碼", CODE_STRONG),
    ("动态码", CODE_STRONG),
    ("動態碼", CODE_STRONG),
    ("确认码", CODE_STRONG),
    ("確認碼", CODE_STRONG),
    ("安全码", CODE_STRONG),
    ("安全碼", CODE_STRONG),
    ("激活码", CODE_STRONG),
    ("登录码", CODE_STRONG),
    ("动态密码", CODE_STRONG),
    ("動態密碼", CODE_STRONG),
    ("口令", CODE_STRONG),
    ("認証コード", CODE_STRONG),
    ("確認コード", CODE_STRONG),
    ("認証番号", CODE_STRONG),
    ("確認番号", CODE_STRONG),
    ("検証コード", CODE_STRONG),
    ("承認コード", CODE_STRONG),
    ("ワンタイム", CODE_STRONG),
    ("セキュリティコード", CODE_STRONG),
    ("パスコード", CODE_STRONG),
    ("暗証番号", CODE_STRONG),
    ("コード", CODE_STRONG),
    ("인증번호", CODE_STRONG),
    ("인증코드", CODE_STRONG),
    ("확인코드", CODE_STRONG),
    ("보안코드", CODE_STRONG),
    ("코드", CODE_STRONG),
    ("验证", CODE_WEAK | VERIFY),
    ("驗證", CODE_WEAK | VERIFY),
    ("认证", CODE_WEAK | VERIFY),
    ("認證", CODE_WEAK | VERIFY),
    ("認証", CODE_WEAK | VERIFY),
    ("确认", CODE_WEAK | VERIFY),
    ("確認", CODE_WEAK | VERIFY),
    ("인증", CODE_WEAK | VERIFY),
    ("확인", CODE_WEAK | VERIFY),
    ("密码", CODE_WEAK | VERIFY_WEAK),
    ("密碼", CODE_WEAK | VERIFY_WEAK),
    ("パスワード", CODE_WEAK | VERIFY_WEAK),
    ("비밀번호", CODE_WEAK | VERIFY_WEAK),
    ("激活", VERIFY),
    ("啟用", VERIFY),
    ("重置", VERIFY),
    ("有効化", VERIFY),
    ("활성화", VERIFY),
    ("재설정", VERIFY),
    ("登录", VERIFY_WEAK),
    ("登入", VERIFY_WEAK),
    ("登錄", VERIFY_WEAK),
    ("ログイン", VERIFY_WEAK),
    ("로그인", VERIFY_WEAK),
    ("退订", UNSUBSCRIBE),
    ("退訂", UNSUBSCRIBE),
    ("取消订阅", UNSUBSCRIBE),
    ("取消訂閱", UNSUBSCRIBE),
    ("配信停止", UNSUBSCRIBE),
    ("配信解除", UNSUBSCRIBE),
    ("購読解除", UNSUBSCRIBE),
    ("수신거부", UNSUBSCRIBE),
    ("구독취소", UNSUBSCRIBE),
    ("订单", ORDER),
    ("訂單", ORDER),
    ("发票", ORDER),
    ("發票", ORDER),
    ("注文", ORDER),
    ("주문", ORDER),
    ("电话", PHONE),
    ("電話", PHONE),
    ("客服", PHONE),
    ("热线", PHONE),
    ("熱線", PHONE),
    ("問い合わせ", PHONE),
    ("전화", PHONE),
    ("고객센터", PHONE),
    ("价格", PRICE),
    ("價格", PRICE),
    ("金额", PRICE),
    ("金額", PRICE),
    ("合计", PRICE),
    ("合計", PRICE),
    ("価格", PRICE),
    ("가격", PRICE),
    ("금액", PRICE),
    ("地址", ADDRESS),
    ("住所", ADDRESS),
    ("주소", ADDRESS),
    ("省", ADDRESS),
    ("市", ADDRESS),
    ("区", ADDRESS),
    ("區", ADDRESS),
    ("路", ADDRESS),
    ("街", ADDRESS),
    ("丁目", ADDRESS),
    ("番地", ADDRESS),
    ("번지", ADDRESS),
    ("隐私", LINK_OTHER),
    ("隱私", LINK_OTHER),
    ("帮助", LINK_OTHER),
    ("プライバシー", LINK_OTHER),
    ("ヘルプ", LINK_OTHER),
    ("개인정보", LINK_OTHER),
    ("도움말", LINK_OTHER),
];

/// Characters that, right after a number with no space, make it a date, a time, an amount
/// or a count ("2026年", "5分钟", "1500円", "3만원").
pub(crate) const CJK_UNIT_CHARS: &[char] = &[
    '年', '月', '日', '円', '元', '원', '분', '초', '시', '时', '時', '号', '號', '点', '點', '秒',
    '分', '块', '塊', '万', '萬', '億', '亿', '个', '個', '件', '名', '人', '回', '次', '개', '명',
    '번', '년', '월', '일',
];
