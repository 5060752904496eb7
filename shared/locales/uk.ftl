# SMS: the code early, then who it is for and how long it lives.
sms = { $code } — ваш код { $app }. Діє { $minutes ->
        [one] { $minutes } хвилину
        [few] { $minutes } хвилини
        [many] { $minutes } хвилин
       *[other] { $minutes } хвилини
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Ваш код підтвердження { $app }: { $code }.
