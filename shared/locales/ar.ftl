# SMS: the code early, then who it is for and how long it lives.
sms = { $code } هو رمز التحقق في { $app }. صالح لمدة { $minutes ->
        [one] دقيقة واحدة
        [two] دقيقتين
        [few] { $minutes } دقائق
       *[other] { $minutes } دقيقة
    }.
# Voice: said twice; $code is the digits with commas between.
voice = رمز التحقق في { $app } هو { $code }.
