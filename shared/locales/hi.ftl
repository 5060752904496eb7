# SMS: the code early, then who it is for and how long it lives.
sms = { $code } आपका { $app } कोड है। { $minutes } मिनट तक मान्य।
# Voice: said twice; $code is the digits with commas between.
voice = आपका { $app } सत्यापन कोड { $code } है।
