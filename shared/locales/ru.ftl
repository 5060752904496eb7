# SMS: the code early, then who it is for and how long it lives.
sms = { $code } — ваш код { $app }. Действует { $minutes ->
        [one] { $minutes } минуту
        [few] { $minutes } минуты
        [many] { $minutes } минут
       *[other] { $minutes } минуты
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Ваш код подтверждения { $app }: { $code }.
